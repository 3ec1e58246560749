// heartwatch status pages: live refresh, copy buttons, filters that apply on change.
// The pages work without this file; it only saves reloads and clicks. No inline script anywhere, so a
// Content-Security-Policy of script-src 'self' holds.
(() => {
  "use strict";

  // --- live refresh: ask the server for this page's live part, swap it in when it changed ---------------
  const live = document.getElementById("live");
  const note = document.getElementById("live-note");
  const every = Number(live && live.dataset.refreshMs) || 2500;
  let etag = null;
  let timer = null;
  let failures = 0;

  function setNote(text, offline) {
    if (!note) return;
    note.hidden = false;
    note.textContent = text;
    note.classList.toggle("offline", offline);
  }

  function swap(html) {
    // Keep what the reader opened (long ping bodies) open across the swap.
    const open = new Set(Array.from(live.querySelectorAll("details[open][id]"), (d) => d.id));
    live.innerHTML = html;
    open.forEach((id) => {
      const d = document.getElementById(id);
      if (d) d.open = true;
    });
    const title = live.querySelector("[data-page-title]");
    if (title) document.title = title.dataset.pageTitle;
    document.dispatchEvent(new CustomEvent("heartwatch:updated"));
  }

  function schedule() {
    if (timer !== null || document.hidden) return;
    // Back off while the server is unreachable, up to a minute.
    const wait = failures ? Math.min(every * 2 ** failures, 60000) : every;
    timer = setTimeout(refresh, wait);
  }

  async function refresh() {
    timer = null;
    if (document.hidden) return; // visibilitychange starts it again
    try {
      const headers = { "X-Heartwatch-Live": "1" };
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(window.location.href, { headers, cache: "no-store", credentials: "same-origin" });
      if (response.status === 401) {
        // The session ran out: a full load goes through the login page and comes back here.
        window.location.reload();
        return;
      }
      if (response.status === 200) {
        etag = response.headers.get("ETag");
        swap(await response.text());
      } else if (response.status !== 304) {
        throw new Error("HTTP " + response.status);
      }
      failures = 0;
      setNote("live · updated " + new Date().toLocaleTimeString(), false);
    } catch (err) {
      failures += 1;
      setNote("cannot reach heartwatch (" + err.message + "); retrying", true);
    }
    schedule();
  }

  if (live) {
    setNote("live", false);
    schedule();
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) return;
      clearTimeout(timer);
      timer = null;
      refresh();
    });
  }

  // --- copy buttons: shown only when this script runs; without it the text is there to select -----------
  function fallbackCopy(text) {
    // navigator.clipboard needs a secure context; plain http on a LAN address is not one.
    const area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "sr";
    document.body.appendChild(area);
    area.select();
    let ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (err) {
      ok = false;
    }
    area.remove();
    return ok;
  }

  document.querySelectorAll("button[data-copy]").forEach((b) => {
    b.hidden = false;
  });

  document.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent;
    let ok = false;
    if (navigator.clipboard && window.isSecureContext) {
      try {
        await navigator.clipboard.writeText(text);
        ok = true;
      } catch (err) {
        ok = false;
      }
    }
    if (!ok) ok = fallbackCopy(text);
    button.textContent = ok ? "Copied" : "Select and copy";
    button.classList.toggle("done", ok);
    setTimeout(() => {
      button.textContent = "Copy";
      button.classList.remove("done");
    }, 1500);
  });

  // --- filters: apply on change; the submit button is only needed without JavaScript ---------------------
  document.querySelectorAll("form[data-autosubmit]").forEach((form) => {
    form.querySelectorAll(".js-hide").forEach((el) => {
      el.hidden = true;
    });
    form.addEventListener("change", (event) => {
      // The search box submits with Enter; a change event on it would submit half a word on blur.
      if (event.target.type !== "search") form.submit();
    });
  });

  // --- the check form: the schedule explained as it is typed, and more step rows ---------------------------
  // The server explains it (words and the next starts in the check's zone): the page asks for the same
  // fragment that it renders itself when the form is posted without JavaScript.
  document.querySelectorAll("form[data-schedule-form]").forEach((form) => {
    const target = document.getElementById("schedule-preview");
    const inputs = form.querySelectorAll("input[data-preview]");
    form.querySelectorAll("[data-preview-button]").forEach((el) => {
      el.remove();
    });
    let wait = null;
    let asked = 0;
    async function explain() {
      const query = new URLSearchParams();
      inputs.forEach((input) => query.set(input.name, input.value));
      const mine = ++asked;
      try {
        const response = await fetch("/checks/new/schedule?" + query.toString(),
                                     { headers: { "X-Heartwatch-Live": "1" }, credentials: "same-origin" });
        if (response.ok && mine === asked && target) target.innerHTML = await response.text();
      } catch (err) {
        // The preview is a help; the form still saves, and the server checks the schedule then.
      }
    }
    inputs.forEach((input) => {
      input.addEventListener("input", () => {
        clearTimeout(wait);
        wait = setTimeout(explain, 250);
      });
    });

    const rows = form.querySelector("[data-step-rows]");
    const add = form.querySelector("[data-add-step]");
    if (rows && add) {
      add.hidden = false;
      add.addEventListener("click", () => {
        const last = rows.lastElementChild;
        const index = rows.children.length;
        const row = last.cloneNode(true);
        row.querySelectorAll("input").forEach((input) => {
          const kind = input.name.startsWith("step_name_") ? "name" : "max";
          input.name = "step_" + kind + "_" + index;
          input.id = "step-" + kind + "-" + index;
          input.value = "";
        });
        row.querySelectorAll("label").forEach((label) => {
          const kind = label.htmlFor.startsWith("step-name-") ? "name" : "max";
          label.htmlFor = "step-" + kind + "-" + index;
          if (kind === "name") label.textContent = "Step " + (index + 1) + " name";
        });
        rows.appendChild(row);
        row.querySelector("input").focus();
      });
    }
  });
})();
