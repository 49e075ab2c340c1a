// The labelling page: one image at a time, answers stored by the server as they are given.
// Everything shown is set with textContent: no text from the server is parsed as HTML.
"use strict";
(() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || "";
  const RATER = /^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,39}$/;
  const $ = (id) => document.getElementById(id);
  let rater = params.get("rater");
  let state = null; // the server's last answer: progress and the next item
  let shown = null; // the item whose image is loaded and visible (answers go to it)
  let busy = false;
  let typed = ""; // digits typed so far, with more than 10 classes

  const query = (extra) => "?" + new URLSearchParams({ token, ...extra }).toString();
  const say = (text) => { $("status").textContent = text || ""; };

  async function call(method, path, body) {
    const opts = { method, headers: {} };
    if (body) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const res = await fetch(path + query(method === "GET" ? { rater } : {}), opts);
    let data = {};
    try { data = await res.json(); } catch (e) { data = { error: res.statusText }; }
    if (!res.ok) {
      const err = new Error(data.error || res.statusText);
      err.status = res.status;
      throw err;
    }
    return data;
  }

  function buildChoices(classes) {
    const box = $("choices");
    box.replaceChildren();
    classes.forEach((name, i) => {
      const b = document.createElement("button");
      b.type = "button";
      b.dataset.choice = String(i);
      const key = document.createElement("span");
      key.className = "key";
      key.textContent = String(i);
      const label = document.createElement("span");
      label.textContent = name;
      b.append(key, label);
      b.addEventListener("click", () => answer(i));
      box.append(b);
    });
    $("keys").textContent = classes.length <= 10
      ? `Keys: 0-${classes.length - 1} pick a class, n = none / cannot tell, u = undo.`
      : "Keys: type a class number and press Enter (Esc clears), n = none / cannot tell, u = undo.";
  }

  function render(s) {
    state = s;
    $("progress").textContent = `${s.done} / ${s.total} labelled`;
    $("undo").disabled = !s.can_undo;
    $("undo-last").disabled = !s.can_undo;
    if (s.item === null) {
      shown = null;
      $("task").hidden = true;
      $("finished").hidden = false;
      return;
    }
    $("finished").hidden = true;
    $("task").hidden = false;
    const img = $("image");
    if (String(s.item) !== img.dataset.item) {
      shown = null;
      img.classList.add("loading");
      img.dataset.item = "";
      img.dataset.want = String(s.item);
      img.src = `img/${s.item}` + query({});
    }
  }

  async function act(fn) {
    if (busy) return;
    busy = true;
    say("");
    try {
      render(await fn());
    } catch (e) {
      say(e.message);
      if (e.status === 409) { // answered elsewhere (another tab): show where this rater stands
        try { render(await call("GET", "api/state")); } catch (e2) { say(e2.message); }
      }
    } finally {
      busy = false;
    }
  }

  function answer(choice) {
    if (shown === null || !state || state.item !== shown) return;
    const item = shown;
    act(() => call("POST", "api/answer", { rater, item, choice }));
  }

  function undo() {
    if (state && state.can_undo) act(() => call("POST", "api/undo", { rater }));
  }

  function showTyped() {
    $("typed").textContent = typed ? `class ${typed}… (Enter)` : "";
  }

  function onKey(e) {
    if (!rater || !state || e.target.tagName === "INPUT") return;
    if (e.ctrlKey || e.metaKey || e.altKey) {
      if ((e.ctrlKey || e.metaKey) && e.key === "z") { e.preventDefault(); undo(); }
      return;
    }
    const k = state.classes.length;
    if (/^[0-9]$/.test(e.key)) {
      if (k <= 10) {
        if (Number(e.key) < k) answer(Number(e.key));
      } else {
        typed = (typed + e.key).slice(-String(k - 1).length);
        showTyped();
      }
    } else if (e.key === "Enter" && typed) {
      const c = Number(typed);
      typed = "";
      showTyped();
      if (c < k) answer(c); else say(`there is no class ${c}`);
    } else if (e.key === "Escape" || (e.key === "Backspace" && typed)) {
      typed = e.key === "Escape" ? "" : typed.slice(0, -1);
      showTyped();
    } else if (e.key === "n" || e.key === "N") {
      answer(-1);
    } else if (e.key === "u" || e.key === "U") {
      undo();
    } else {
      return;
    }
    e.preventDefault();
  }

  async function begin() {
    $("who").hidden = true;
    $("who-label").textContent = `Rater ${rater}:`;
    try {
      const s = await call("GET", "api/state");
      buildChoices(s.classes);
      render(s);
    } catch (e) {
      say(e.message);
    }
  }

  function askName() {
    $("who").hidden = false;
    $("name").focus();
    $("who").addEventListener("submit", (e) => {
      e.preventDefault();
      const name = $("name").value.trim();
      if (!RATER.test(name)) {
        say("Use 1-40 letters, digits or _ . : @ - (starting with a letter or digit).");
        return;
      }
      rater = name;
      history.replaceState(null, "", query({ rater }));
      say("");
      begin();
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    const img = $("image");
    img.addEventListener("load", () => {
      if (state && img.dataset.want === String(state.item)) {
        shown = state.item;
        img.dataset.item = String(shown);
        img.classList.remove("loading");
      }
    });
    img.addEventListener("error", () => say("the image could not be loaded; reload the page"));
    $("none").addEventListener("click", () => answer(-1));
    $("undo").addEventListener("click", undo);
    $("undo-last").addEventListener("click", undo);
    document.addEventListener("keydown", onKey);
    if (!token) {
      say("Open the URL that `advaug label` printed: it carries the access token.");
    } else if (rater && RATER.test(rater)) {
      begin();
    } else {
      askName();
    }
  });
})();
