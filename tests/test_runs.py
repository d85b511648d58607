import pandas as pd

from twotower.data.runs import read_trec_run, write_trec_run


def test_trec_run_format_and_round_trip(tmp_path):
    run = pd.DataFrame({"qid": ["1", "1", "20"], "pid": ["007", "h3f", "12"], "rank": [1, 2, 1],
                        "score": [0.9, 0.25, -0.5]})
    path = tmp_path / "run.trec"
    write_trec_run(run, path, tag="twotower")
    assert path.read_text().splitlines() == [
        "1 Q0 007 1 0.900000 twotower",
        "1 Q0 h3f 2 0.250000 twotower",
        "20 Q0 12 1 -0.500000 twotower",
    ]
    back = read_trec_run(path)
    assert back["pid"].tolist() == ["007", "h3f", "12"]  # ids stay strings: leading zeros kept
    pd.testing.assert_frame_equal(back, run)
