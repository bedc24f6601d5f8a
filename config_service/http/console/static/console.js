// The console's only script (docs/console.md): live updates from /ui/events, jumping to an
// error's line in the editor, copying a new token. Nothing here builds HTML from text.
"use strict";

function follow(url, onEvent, onState) {
  if (!window.EventSource) return;
  const source = new EventSource(url);
  source.addEventListener("open", () => onState && onState("on"));
  source.addEventListener("error", () => onState && onState("retrying"));
  for (const kind of ["version", "rollout", "retired"]) {
    source.addEventListener(kind, onEvent);
  }
}

function liveMatrix(matrix) {
  const live = document.getElementById("live");
  let pending = false;
  const refresh = async () => {
    if (pending) return;
    pending = true;
    try {
      const answer = await fetch(matrix.dataset.refresh, { credentials: "same-origin" });
      if (answer.ok) {
        const page = new DOMParser().parseFromString(await answer.text(), "text/html");
        matrix.replaceChildren(...page.body.childNodes);
        if (live) live.textContent = "Live · updated " + new Date().toLocaleTimeString();
      } else if (answer.status === 401 || answer.redirected) {
        window.location.assign("/ui/login");
      }
    } finally {
      pending = false;
    }
  };
  follow(matrix.dataset.events, refresh, (state) => {
    if (!live) return;
    live.dataset.state = state;
    if (state === "on" && live.textContent.indexOf("updated") < 0) live.textContent = "Live";
    if (state === "retrying") live.textContent = "Live updates reconnecting…";
  });
}

const NOTICES = {
  version: "A newer version arrived.",
  retired: "The document was retired.",
  rollout: "The rollout changed.",
};

function liveDocument(notice) {
  const shown = Number(notice.dataset.version || 0);
  const what = notice.querySelector(".what");
  follow(notice.dataset.events, (event) => {
    let moved = true;
    try {
      const data = JSON.parse(event.data);
      moved = event.type === "rollout" || !data.version || data.version !== shown;
    } catch (error) {
      moved = true;
    }
    if (!moved) return;
    if (what) what.textContent = NOTICES[event.type] || NOTICES.version;
    notice.hidden = false;
  });
}

function gotoLine(button) {
  const editor = document.getElementById("source");
  if (!editor) return;
  const line = Number(button.dataset.line || 1);
  const column = Number(button.dataset.column || 1);
  const lines = editor.value.split("\n");
  let offset = 0;
  for (let index = 0; index < line - 1 && index < lines.length; index++) offset += lines[index].length + 1;
  offset += Math.max(0, column - 1);
  editor.focus();
  editor.setSelectionRange(offset, offset);
  const height = editor.scrollHeight / Math.max(1, lines.length);
  editor.scrollTop = Math.max(0, (line - 5) * height);
}

document.addEventListener("DOMContentLoaded", () => {
  const matrix = document.getElementById("matrix");
  if (matrix) liveMatrix(matrix);
  const notice = document.getElementById("notice");
  if (notice) liveDocument(notice);
  for (const button of document.querySelectorAll("button.goto")) {
    button.addEventListener("click", () => gotoLine(button));
  }
  for (const button of document.querySelectorAll("button.copy")) {
    button.addEventListener("click", async () => {
      const field = document.getElementById(button.dataset.copy);
      if (!field) return;
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
        button.textContent = "Copied";
      } catch (error) {
        button.textContent = "Selected: press Ctrl+C";
      }
    });
  }
});
