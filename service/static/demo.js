// The demo page: POST the text to /v1/tag and show it back with entities marked.
// Offsets from the API are code-point indices, so the text is sliced as
// Array.from(text) (code points), not as a JavaScript (UTF-16) string.
"use strict";

const KNOWN = new Set(["PER", "LOC", "ORG", "MISC"]);

function render(text, entities) {
  const out = document.getElementById("output");
  out.replaceChildren();
  const chars = Array.from(text);
  let at = 0;
  for (const ent of entities) {
    if (ent.start > at) out.append(chars.slice(at, ent.start).join(""));
    const mark = document.createElement("mark");
    mark.className = "ent ent-" + (KNOWN.has(ent.label) ? ent.label : "other");
    mark.dataset.label = ent.label;
    mark.title = ent.label + " · score " + ent.score.toFixed(3);
    mark.append(chars.slice(ent.start, ent.end).join(""));
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = ent.label;
    mark.append(label);
    out.append(mark);
    at = ent.end;
  }
  if (at < chars.length) out.append(chars.slice(at).join(""));
}

async function tag() {
  const text = document.getElementById("text").value;
  const status = document.getElementById("status");
  status.textContent = "";
  try {
    const response = await fetch("v1/tag", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({text: text}),
    });
    const body = await response.json();
    if (!response.ok) {
      status.textContent = body.error ? body.error.message : "request failed: " + response.status;
      return;
    }
    render(text, body.entities);
  } catch (err) {
    status.textContent = "request failed: " + err;
  }
}

document.getElementById("tag").addEventListener("click", tag);
