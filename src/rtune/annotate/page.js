// rtune annotate: the judging page. Plain JS, no build step.
// Model texts arrive as HTML rendered on the server by a Markdown renderer that escapes raw HTML
// and refuses javascript: links; nothing else from the server is ever inserted as HTML.
"use strict";

(function () {
  const token = new URLSearchParams(window.location.search).get("token") || "";
  const $ = (id) => document.getElementById(id);
  let state = null;
  let busy = false;

  async function call(method, path, body) {
    const headers = { "X-Rtune-Token": token };
    const options = { method: method, headers: headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (error) { data = null; }
    if (!response.ok) {
      const message = (data && data.error) || (response.status + " " + response.statusText);
      if (data && data.state) { return { state: data.state, message: message }; }
      throw new Error(message);
    }
    return { state: data, message: "" };
  }

  function say(text, isError) {
    const box = $("message");
    box.textContent = text || "";
    box.className = isError ? "error" : "";
  }

  function render(next) {
    state = next;
    document.body.dataset.loaded = "1";
    $("annotator").textContent = "annotator: " + state.annotator;
    $("progress-text").textContent = state.done + " / " + state.total;
    $("progress-bar").max = Math.max(state.total, 1);
    $("progress-bar").value = state.done;
    for (const button of document.querySelectorAll(".undo")) { button.disabled = !state.can_undo; }
    const item = state.item;
    $("judging").hidden = item === null;
    $("finished").hidden = item !== null;
    if (item === null) {
      document.body.dataset.item = "done";
      $("finished-summary").textContent = state.done + " pairs judged" + (state.skipped ? " (" + state.skipped + " skipped)" : "") + ".";
      $("export-command").textContent = "rtune annotate export " + state.directory;
      return;
    }
    if (document.body.dataset.item !== item.pair_id) {
      // Sanitised HTML from the server's Markdown renderer (raw HTML escaped, unsafe links dropped).
      $("instruction").innerHTML = item.instruction;
      $("left").innerHTML = item.left;
      $("right").innerHTML = item.right;
      $("left").scrollTop = 0;
      $("right").scrollTop = 0;
      window.scrollTo(0, 0);
    }
    $("item-number").textContent = "(item " + item.number + " of " + state.total + ")";
    document.body.dataset.item = item.pair_id;
  }

  async function act(request) {
    if (busy) { return; }
    busy = true;
    document.body.classList.add("busy");
    try {
      const result = await request();
      render(result.state);
      say(result.message, Boolean(result.message));
    } catch (error) {
      say("Not saved: " + error.message, true);
    } finally {
      busy = false;
      document.body.classList.remove("busy");
    }
  }

  function judge(choice) {
    if (!state || !state.item) { return; }
    const pairId = state.item.pair_id;
    act(() => call("POST", "/api/judgments", { pair_id: pairId, choice: choice }));
  }

  function undo() {
    if (!state || !state.can_undo) { return; }
    act(async () => {
      const result = await call("POST", "/api/undo", {});
      if (result.state.undone) { result.message = result.message || "Undone: judge this pair again."; }
      return result;
    });
  }

  const keys = { "1": "left", "2": "right", "3": "tie", "s": "skip" };

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || event.repeat) { return; }
    const key = event.key.toLowerCase();
    if (key in keys) { event.preventDefault(); judge(keys[key]); }
    else if (key === "u") { event.preventDefault(); undo(); }
  });

  document.addEventListener("DOMContentLoaded", () => {
    for (const button of document.querySelectorAll("button.choice")) {
      // blur: a later Enter or Space must not repeat this choice on the next pair
      button.addEventListener("click", () => { button.blur(); judge(button.dataset.choice); });
    }
    for (const button of document.querySelectorAll(".undo")) {
      button.addEventListener("click", () => { button.blur(); undo(); });
    }
    act(() => call("GET", "/api/state"));
  });
})();
