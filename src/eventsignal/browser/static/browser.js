// The browser's only script; every page works without it. It follows the live log through
// server-sent events and moves the state's time slider as it is dragged.
"use strict";

function followLog() {
  const status = document.getElementById("live-status");
  const body = document.querySelector("#log tbody");
  if (!status || !body || !status.dataset.live || !window.EventSource) return;
  const source = new EventSource(status.dataset.live);
  status.textContent = "Following new events live.";
  source.addEventListener("row", (message) => {
    const holder = document.createElement("tbody");
    holder.innerHTML = message.data; // rendered and escaped by the server
    for (const row of Array.from(holder.children)) {
      row.classList.add("new");
      body.appendChild(row);
    }
  });
  source.addEventListener("error", () => {
    status.textContent = "Reconnecting to the live log…";
  });
  source.addEventListener("open", () => {
    status.textContent = "Following new events live.";
  });
}

function slideThroughTime() {
  for (const form of document.querySelectorAll("form[data-autosubmit]")) {
    const range = form.querySelector('input[type="range"]');
    const output = form.querySelector("output");
    if (!range) continue;
    range.addEventListener("input", () => {
      if (output) output.textContent = range.value;
    });
    range.addEventListener("change", () => form.requestSubmit());
  }
}

followLog();
slideThroughTime();
