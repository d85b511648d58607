"""The teacher (a pretrained sentence encoder) and what is distilled from it: word-piece
vectors, the teacher-passage index, candidate passages for real queries. Imports the top
level, `data`, `text` and `retrieval`."""
