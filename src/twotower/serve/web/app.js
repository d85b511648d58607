// The search page: one query, three requests (dense, bm25, hybrid), three columns.
// Texts are inserted as DOM text nodes, never as HTML, so a passage cannot inject markup.
"use strict";

const MODES = ["dense", "bm25", "hybrid"];
// Lucene's English stopwords, which BM25 ignores too: highlighting them would mark every line.
const STOPWORDS = new Set(("a an and are as at be but by for if in into is it no not of on or such " +
  "that the their then there these they this to was will with").split(" "));

function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}_]+/gu) || [];
  return [...new Set(words.filter((w) => w.length > 1 && !STOPWORDS.has(w)))];
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// `text` as nodes, query terms wrapped in <mark>: a term of 4+ letters also marks the words
// it starts ("flea" marks "fleas"); a shorter one only itself ("do" leaves "don't" alone).
function highlighted(text, terms) {
  const fragment = document.createDocumentFragment();
  if (!terms.length) {
    fragment.append(text);
    return fragment;
  }
  const word = "[\\p{L}\\p{N}_]";
  const alternatives = terms.map((t) => escapeRegExp(t) + (t.length >= 4 ? `${word}*` : `(?!${word})`));
  const pattern = new RegExp(`(?<!${word})(?:${alternatives.join("|")})`, "giu");
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    fragment.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    fragment.append(mark);
    last = match.index + match[0].length;
  }
  fragment.append(text.slice(last));
  return fragment;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderHits(column, body, terms) {
  const list = column.querySelector(".hits");
  const took = column.querySelector(".took");
  took.classList.remove("error");
  took.textContent = `${body.hits.length} hit${body.hits.length === 1 ? "" : "s"} in ${body.took_ms.toFixed(1)} ms` +
    (body.truncated ? " (query truncated)" : "");
  list.replaceChildren(...body.hits.map((hit) => {
    const item = element("li", "hit");
    const meta = element("div", "meta");
    meta.append(element("span", "rank", `#${hit.rank}`), element("span", "pid", hit.id),
                element("span", "score", hit.score.toFixed(4)));
    const text = element("p", "text");
    text.append(highlighted(hit.text || "", terms));
    item.append(meta, text);
    return item;
  }));
}

function renderError(column, message) {
  const took = column.querySelector(".took");
  took.classList.add("error");
  took.textContent = message;
  column.querySelector(".hits").replaceChildren();
}

// Numbers each search: an answer is shown only while its search is the latest, so a slow
// answer to an earlier query cannot replace the answer to the query now in the box.
let latestSearch = 0;

async function searchMode(mode, query, k, terms, searchNumber) {
  const column = document.querySelector(`.column[data-mode="${mode}"]`);
  column.querySelector(".took").textContent = "searching\u2026";
  try {
    const params = new URLSearchParams({ q: query, k: String(k), mode });
    const response = await fetch(`/search?${params}`);
    const body = await response.json();
    if (searchNumber !== latestSearch) return;
    if (!response.ok) {
      renderError(column, body.error || `error ${response.status}`);
    } else {
      renderHits(column, body, terms);
    }
  } catch (error) {
    if (searchNumber === latestSearch) renderError(column, "the server did not answer");
  }
}

async function search(event) {
  if (event) event.preventDefault();
  const query = document.getElementById("q").value;
  const k = Number(document.getElementById("k").value);
  const message = document.getElementById("message");
  if (!query.trim()) {
    message.textContent = "Type a query first.";
    return;
  }
  message.textContent = "";
  const url = new URL(window.location);
  url.searchParams.set("q", query);
  url.searchParams.set("k", String(k));
  window.history.replaceState(null, "", url);
  const terms = queryTerms(query);
  const searchNumber = ++latestSearch;
  await Promise.all(MODES.map((mode) => searchMode(mode, query, k, terms, searchNumber)));
}

async function describeIndex() {
  const about = document.getElementById("about");
  try {
    const health = await (await fetch("/health")).json();
    about.textContent = `${health.passages.toLocaleString()} passages, ${health.index} dense index, ` +
      `model ${String(health.model_sha256 || "").slice(0, 12)}`;
  } catch (error) {
    about.textContent = "the server did not answer /health";
  }
}

document.getElementById("search").addEventListener("submit", search);
describeIndex();
const initial = new URLSearchParams(window.location.search);
if (initial.get("q")) {
  document.getElementById("q").value = initial.get("q");
  if (["10", "20", "50", "100"].includes(initial.get("k"))) document.getElementById("k").value = initial.get("k");
  search();
}
