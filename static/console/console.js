// The console's only script (served from static/, no inline code: strict CSP).
//
// New runs are added to the top of the runs page by polling; a run whose card
// is already on the page (a retry just made from it, say) must not appear twice.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const fragment = event.detail.fragment;
  if (!fragment || event.detail.target.id !== "run-cards") return;
  for (const card of Array.from(fragment.querySelectorAll("article.run-card[id]"))) {
    if (document.getElementById(card.id)) card.remove();
  }
});

// Bulk retry on the runs page: "Select all on this page" ticks every card's
// checkbox (they join the #bulk-select form through their form= attribute).
// Without JavaScript the box stays hidden and the "All N on this page" button
// does the same job.
function showBulkSelectAll(root) {
  for (const el of root.querySelectorAll("[data-needs-js][hidden]")) el.hidden = false;
}
document.addEventListener("DOMContentLoaded", () => showBulkSelectAll(document));
document.addEventListener("htmx:load", (event) => showBulkSelectAll(event.detail.elt));
document.addEventListener("change", (event) => {
  const all = event.target.closest("input[data-select-all]");
  if (!all) return;
  const formId = all.getAttribute("data-select-all");
  for (const box of document.querySelectorAll(`input.bulk-pick[form="${formId}"]`)) {
    box.checked = all.checked;
  }
});

// An answer to what the person did on a card (Retry, Check, "This is the
// retry") must reach them. Some requests redraw cards wholesale: the runs
// page's results (a search, a filter, "Older runs": they replace #run-results),
// a card's own poll, and the run page's details, which bring that page's cards
// along (#run-card-slot, out of band). None of them is drawn over an answer:
// results are not sent while an action is being sent, and a redraw asked for
// before the latest action (typed, then Retry clicked before the search went
// out), or sent before its answer came back (read in the middle of it), is not
// drawn over the cards: results and polls are dropped, the details are drawn
// without their cards. Once the answer is drawn, the server tells the run page
// to redraw its details (`run-changed`). hx-sync can't say this: it gives each
// element one queue, and searches must keep replacing one another while never
// cutting an action short, nor actions each other.
let actionsSending = 0;
let lastActionAt = -Infinity;
let lastAnswerAt = -Infinity;
const requests = new WeakMap(); // request -> {asked, sent}
const CARDS = "#run-results, #run-card-slot, article.run-card";

// The element that made the request (`detail.elt` is where the event fired).
function isCardAction(detail) {
  const elt = detail.requestConfig?.elt ?? detail.elt;
  return elt instanceof Element && elt.matches("article.run-card form");
}

function drawsOverAnAnswer(detail) {
  const { asked, sent } = requests.get(detail.xhr) ?? { asked: Infinity, sent: Infinity };
  return actionsSending > 0 || asked < lastActionAt || sent < lastAnswerAt;
}

// `html` without the cards it would swap in out of band.
function withoutCards(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  const cards = [...template.content.children].filter(
    (elt) => elt.matches("[hx-swap-oob]") && elt.matches(CARDS),
  );
  for (const elt of cards) elt.remove();
  return cards.length ? template.innerHTML : html;
}

document.addEventListener("htmx:beforeRequest", (event) => {
  const detail = event.detail;
  const now = performance.now();
  if (isCardAction(detail)) {
    actionsSending += 1;
    lastActionAt = now;
  } else if (actionsSending > 0 && detail.target?.id === "run-results") {
    event.preventDefault();
  } else {
    const asked = detail.requestConfig?.triggeringEvent?.timeStamp ?? now;
    requests.set(detail.xhr, { asked, sent: now });
  }
});
document.addEventListener("htmx:beforeSwap", (event) => {
  const detail = event.detail;
  if (isCardAction(detail) || !drawsOverAnAnswer(detail)) return;
  if (detail.target?.matches(CARDS)) {
    detail.shouldSwap = false;
  } else if (typeof detail.serverResponse === "string") {
    detail.serverResponse = withoutCards(detail.serverResponse);
  }
});
// Fired on the form, or on its nearest ancestor still in the page once its
// card has been swapped; also after an error or an abort.
document.addEventListener("htmx:afterRequest", (event) => {
  if (!isCardAction(event.detail)) return;
  actionsSending = Math.max(0, actionsSending - 1);
  lastAnswerAt = performance.now();
});

// The theme switch (Auto / Light / Dark, console/theme.py): without
// JavaScript its buttons post and the page comes back in the new theme; with
// it the theme changes at once and the same post only remembers it.
document.addEventListener("submit", (event) => {
  const form = event.target.closest("form.theme-choice");
  if (!form || !event.submitter) return;
  event.preventDefault();
  const data = new FormData(form, event.submitter);
  const chosen = data.get("theme");
  if (chosen === "light" || chosen === "dark") {
    document.documentElement.setAttribute("data-theme", chosen);
  } else {
    document.documentElement.removeAttribute("data-theme");
  }
  const switcher = form.closest("details.theme-switch");
  for (const button of switcher.querySelectorAll("button[name=theme]")) {
    button.setAttribute("aria-pressed", String(button.value === chosen));
  }
  switcher.querySelector(".theme-current").textContent = event.submitter.textContent;
  switcher.open = false;
  fetch(form.action, { method: "POST", body: data, headers: { "X-Theme-Switch": "1" } });
});

// "Copy summary" (a retry's ticket paragraph): copies its read-only text box.
// Without JavaScript the buttons stay hidden and the text can be selected.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("button[data-copy]");
  if (!button) return;
  const box = document.getElementById(button.getAttribute("data-copy"));
  const state = button.parentElement.querySelector(".copy-state");
  if (!box) return;
  box.select();
  let copied = false;
  try {
    await navigator.clipboard.writeText(box.value);
    copied = true;
  } catch {
    copied = document.execCommand && document.execCommand("copy");
  }
  if (state) state.textContent = copied ? "Copied." : "Selected: press Ctrl+C to copy.";
});

// Times marked data-relative (run cards: their markup is cached, so the server
// can't say it) get how long ago they are, "(12 min ago)", kept current.
// console/timefmt.py `relative` says the same in words.
function relativeText(then, now) {
  const seconds = (then - now) / 1000;
  if (Math.abs(seconds) < 60) return "just now";
  const minutes = Math.floor(Math.abs(seconds) / 60);
  let amount = `${Math.floor(minutes / 1440)} days`;
  if (minutes < 60) amount = `${minutes} min`;
  else if (minutes < 48 * 60) amount = `${Math.floor(minutes / 60)} h`;
  return seconds > 0 ? `in ${amount}` : `${amount} ago`;
}
function showRelativeTimes(root) {
  const now = Date.now();
  for (const time of root.querySelectorAll("time[data-relative]")) {
    // Python's ISO time has microseconds; Date.parse reads milliseconds.
    const then = Date.parse(time.getAttribute("datetime").replace(/(\.\d{3})\d+/, "$1"));
    if (Number.isNaN(then)) continue;
    let note = time.nextElementSibling;
    if (!note || !note.classList.contains("time-relative")) {
      note = document.createElement("span");
      note.className = "time-relative";
      time.after(note);
    }
    note.textContent = ` (${relativeText(then, now)})`;
  }
}
document.addEventListener("DOMContentLoaded", () => showRelativeTimes(document));
document.addEventListener("htmx:load", (event) => showRelativeTimes(event.detail.elt));
setInterval(() => showRelativeTimes(document), 30000);

// Signing in tells the console the browser's time zone, which becomes the
// person's only if they have none saved yet. Without JavaScript it stays UTC.
function sendBrowserTimeZone() {
  let zone = "";
  try {
    zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "";
  } catch {
    return;
  }
  if (!zone) return;
  for (const input of document.querySelectorAll("input[data-browser-time-zone]")) {
    input.value = zone;
  }
  // The identity provider's sign-in is a link: the zone goes along in its URL.
  for (const link of document.querySelectorAll("a[data-browser-time-zone]")) {
    const url = new URL(link.href, document.baseURI);
    url.searchParams.set("time_zone", zone);
    link.href = url.pathname + url.search;
  }
}
document.addEventListener("DOMContentLoaded", sendBrowserTimeZone);
