// The console's only script (served from static/, no inline code: strict CSP).
//
// The server's hint that this browser runs the script: a page may then leave
// slow parts (the runs page's counts under a search or filter) to a request
// made as soon as it loads (console/runs/views.py, SCRIPTED_COOKIE).
document.cookie = `console_js=1; path=/; SameSite=Lax${location.protocol === "https:" ? "; Secure" : ""}`;

// New runs are added to the top of the runs page by polling; a run whose card
// is already on the page (a retry just made from it, say) must not appear twice.
// In compact rows (console/runs/row_html.py) a run is a row, added under the head.
document.addEventListener("htmx:oobBeforeSwap", (event) => {
  const fragment = event.detail.fragment;
  const target = event.detail.target.id;
  if (!fragment || (target !== "run-cards" && target !== "run-rows-head")) return;
  const runs = fragment.querySelectorAll("article.run-card[id], tbody.run-row[id]");
  for (const card of Array.from(runs)) {
    if (document.getElementById(card.id)) card.remove();
  }
});

// A compact row whose card the person unfolded keeps it unfolded when it is
// redrawn (its own refresh, or the answer to a form sent from it; "Don't
// retry" and "Keep it running" fold it again).
document.addEventListener("htmx:configRequest", (event) => {
  const elt = event.detail.elt;
  const row = elt.closest?.("tbody.run-row");
  if (!row || (elt !== row && !elt.matches("form"))) return;
  if (row.querySelector(":scope > .row-card details.row-expand[open]")) {
    event.detail.parameters.open = "1";
  }
});

// Bulk retry on the runs page: "Select all N on this page" ticks every card's
// checkbox (they join the #bulk-select form through their form= attribute),
// a live count says how many are ticked, and the buttons acting on the ticked
// runs wait for one. Without JavaScript the box and the count stay hidden, and a
// button of the same name previews the page's runs instead ([data-without-js]).
function ticksOf(formId) {
  return document.querySelectorAll(`input.bulk-pick[form="${CSS.escape(formId)}"]`);
}
function showTicked(form) {
  const boxes = [...ticksOf(form.id)];
  const ticked = boxes.filter((box) => box.checked).length;
  for (const count of document.querySelectorAll(`[data-ticked-count="${CSS.escape(form.id)}"]`)) {
    const words = `${ticked} run${ticked === 1 ? "" : "s"} ticked`;
    if (count.textContent !== words) count.textContent = words;
  }
  for (const button of form.querySelectorAll("button[data-needs-ticks]")) button.disabled = ticked === 0;
  for (const all of document.querySelectorAll(`input[data-select-all="${CSS.escape(form.id)}"]`)) {
    all.checked = boxes.length > 0 && ticked === boxes.length;
    all.indeterminate = ticked > 0 && ticked < boxes.length;
  }
}
function showBulkSelectAll(root) {
  for (const el of root.querySelectorAll("[data-needs-js][hidden]")) el.hidden = false;
  for (const el of root.querySelectorAll("[data-without-js]")) el.hidden = true;
  // New cards (a poll, a retry's answer) change what "all" means.
  for (const form of document.querySelectorAll("form.bulk-select[id]")) showTicked(form);
}
document.addEventListener("DOMContentLoaded", () => showBulkSelectAll(document));
document.addEventListener("htmx:load", (event) => showBulkSelectAll(event.detail.elt));
document.addEventListener("change", (event) => {
  const all = event.target.closest("input[data-select-all]");
  const pick = event.target.closest("input.bulk-pick[form]");
  const formId = all ? all.getAttribute("data-select-all") : pick?.getAttribute("form");
  if (!formId) return;
  if (all) for (const box of ticksOf(formId)) box.checked = all.checked;
  const form = document.getElementById(formId);
  if (form) showTicked(form);
});

// An answer to what the person did on a card or a compact row (Retry, Check,
// "This is the retry") must reach them. Some requests redraw cards wholesale: the runs
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
const CARDS = "#run-results, #run-card-slot, article.run-card, tbody.run-row";

// The element that made the request (`detail.elt` is where the event fired).
function isCardAction(detail) {
  const elt = detail.requestConfig?.elt ?? detail.elt;
  return elt instanceof Element && elt.matches("article.run-card form, tbody.run-row form");
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

// A retry's new run that moved on (its card's poll says so, `run-changed`):
// the card of the run it retried, if on this runs page, is drawn again to say
// how its retry ended. The run page redraws its own cards with its details.
document.addEventListener("run-changed", (event) => {
  const from = event.detail?.retried_from;
  if (!from?.card_url || !window.htmx) return;
  const id = CSS.escape(from.run_id);
  const card = document.querySelector(`#run-cards article.run-card[data-run-id="${id}"]`);
  // In compact rows the original is its row (line and card), asked for as a row.
  const row = document.querySelector(`#run-rows tr.row-line[data-run-id="${id}"]`)?.closest("tbody.run-row");
  const original = card ?? row;
  if (!original?.id) return;
  htmx.ajax("GET", from.card_url, {
    source: original,
    target: `#${original.id}`,
    swap: "outerHTML",
    values: row ? { layout: "rows" } : {},
  });
});

// A button whose form is on its way (Retry, Check, Sync now…) shows a spinner
// (Pico draws one for aria-busy) while htmx keeps it disabled (hx-disabled-elt);
// an answer that doesn't replace the form gives it back.
function busyButtons(detail) {
  const form = detail.requestConfig?.elt ?? detail.elt;
  if (!(form instanceof HTMLFormElement) || !form.hasAttribute("hx-disabled-elt")) return [];
  const submitter = detail.requestConfig?.triggeringEvent?.submitter;
  return submitter ? [submitter] : [...form.querySelectorAll("button[type=submit]")];
}
document.addEventListener("htmx:beforeRequest", (event) => {
  if (event.defaultPrevented) return;
  for (const button of busyButtons(event.detail)) button.setAttribute("aria-busy", "true");
});
document.addEventListener("htmx:afterRequest", (event) => {
  for (const button of busyButtons(event.detail)) button.removeAttribute("aria-busy");
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

// Keyboard use. Anything that stands for a run (a card, a compact row's line)
// carries `data-run-id`; inside it, `input.bulk-pick` is its bulk-retry box and
// `form.retry-form` holds its Retry. A run's element nested in another (a
// check's candidate runs, inside the card) is part of that run, not a run of
// the list. A compact row (tbody.run-row) is its line and the card unfolding
// under it: the line stands for the run, anything in the card belongs to it.
const RUN = "[data-run-id]";
const ROW = "tbody.run-row";

function runOf(elt) {
  let run = elt instanceof Element ? elt.closest(RUN) : null;
  while (run?.parentElement?.closest(RUN)) run = run.parentElement.closest(RUN);
  const row = (run ?? elt)?.closest?.(ROW);
  return row?.querySelector(`:scope > ${RUN}`) ?? run;
}

// All of the run: a row's line and its card, or the card.
function runWhole(run) {
  return run.closest(ROW) ?? run;
}

function runsShown() {
  return [...document.querySelectorAll(RUN)].filter(
    (run) => runOf(run) === run && run.getClientRects().length > 0,
  );
}

function runNamed(runId) {
  return runsShown().find((run) => run.getAttribute("data-run-id") === runId) ?? null;
}

function focusRun(run, { scroll = true } = {}) {
  if (!run.hasAttribute("tabindex")) run.tabIndex = -1;
  run.focus({ preventScroll: true });
  if (scroll) run.scrollIntoView({ block: "nearest" });
}

// Said once to screen readers (the polite region in base.html); emptied first
// so that the same words twice are said twice.
function announce(text) {
  const region = document.getElementById("live-announcer");
  if (!region || !text) return;
  region.textContent = "";
  setTimeout(() => {
    region.textContent = text;
  }, 50);
}

function words(elt) {
  return elt ? elt.textContent.replace(/\s+/g, " ").trim() : "";
}

// The run whose element had the focus last (through the keyboard, a click on
// its buttons, or an answer drawn in it): when a swap redraws it and the focus
// falls to the page, the focus goes back to the run's new element.
let focusedRun = null;
document.addEventListener("focusin", (event) => {
  const run = runOf(event.target);
  focusedRun = run ? run.getAttribute("data-run-id") : null;
});
document.addEventListener("pointerdown", (event) => {
  if (!runOf(event.target)) focusedRun = null;
});

// What the person did on a run (Retry, Check, Don't retry...): the request's
// element is inside the run's element; a card's or a row's own poll is the
// element itself (the row's: its tbody).
const answers = new WeakMap(); // request -> {runId, action, newRuns}
function runAction(detail) {
  const elt = detail.requestConfig?.elt ?? detail.elt;
  const run = runOf(elt);
  return run && run !== elt && runWhole(run) !== elt ? { run, elt } : null;
}
document.addEventListener("htmx:beforeRequest", (event) => {
  const acted = runAction(event.detail);
  if (!acted) return;
  const runId = acted.run.getAttribute("data-run-id");
  focusedRun = runId;
  const action = acted.elt.closest("form")?.className ?? "";
  answers.set(event.detail.xhr, { runId, action, newRuns: [] });
});
// The runs an answer brings besides the run's own (a retry's new run).
document.addEventListener("htmx:beforeSwap", (event) => {
  const answer = answers.get(event.detail.xhr);
  if (!answer || !event.detail.shouldSwap || typeof event.detail.serverResponse !== "string") return;
  const template = document.createElement("template");
  template.innerHTML = event.detail.serverResponse;
  answer.newRuns = [...template.content.querySelectorAll(RUN)]
    .filter((run) => runOf(run) === run)
    .map((run) => run.getAttribute("data-run-id"))
    .filter((runId) => runId !== answer.runId);
});

// What changed, in words, from the run's element as the answer drew it.
function whatChanged(run, answer) {
  const runId = answer.runId;
  const status = (id) => words(runNamed(id)?.querySelector(".badge")).toLowerCase();
  run = runWhole(run);
  const error = run.querySelector(".card-error");
  if (error) return `Run ${runId}: ${words(error)}`;
  if (answer.newRuns.length) {
    const made = answer.newRuns.map((id) => `${id} ${status(id)}`.trim()).join(", ");
    return `Run ${runId} retried: new run ${made}.`;
  }
  const asking = run.querySelector(".retry-confirm .retry-warning, .confirm-cancel");
  if (asking) return `Run ${runId}: ${words(asking)} Confirm, or keep it as it is.`;
  const said = {
    "check-form": ".check-note",
    "replay-form": ".webhook-replay",
    "cancel-form": ".cancel-note",
    "retry-form": ".retried",
    "inline-form link-form": ".retried",
  }[answer.action];
  const line = said && run.querySelector(said);
  if (line) return `Run ${runId}: ${words(line)}`;
  return `Run ${runId}: ${status(runId) || "updated"}.`;
}

document.addEventListener("htmx:afterSettle", (event) => {
  const answer = answers.get(event.detail.xhr);
  if (answer) {
    answers.delete(event.detail.xhr); // settled once per element it drew
    const run = runNamed(answer.runId);
    if (!run) return;
    focusRun(run, { scroll: false });
    announce(whatChanged(run, answer));
    return;
  }
  // A search, a filter, "Older runs": how many runs match now. (The results
  // are not a live region: a card polling itself would be read out each time.)
  if (event.target.id === "run-results") {
    announce(words(document.getElementById("result-count")));
  }
  // Any other redraw (a poll, the run page's details) that took the focus away.
  const lost = !document.activeElement || document.activeElement === document.body;
  if (lost && focusedRun) {
    const run = runNamed(focusedRun);
    if (run) focusRun(run, { scroll: false });
  }
});

// The shortcuts. None while typing, nor with Ctrl, Alt or Cmd (the browser's
// and the screen reader's own), nor behind an open dialog.
const NOT_TYPED = new Set(["checkbox", "radio", "button", "submit", "reset", "image", "file"]);
function typing(target) {
  if (!(target instanceof Element)) return false;
  if (target.matches("input")) return !NOT_TYPED.has(target.type);
  return target.closest("textarea, select, [contenteditable]:not([contenteditable=false])") !== null;
}

function nextRun(step) {
  const runs = runsShown();
  if (!runs.length) return false;
  const at = runs.indexOf(runOf(document.activeElement));
  const to = at < 0 ? (step > 0 ? 0 : runs.length - 1) : at + step;
  if (to >= 0 && to < runs.length) focusRun(runs[to]);
}

// `r`: the run's Retry, pressed as a click would. A run that succeeded asks
// first (its Retry opens the question); a retry that needs a box ticked
// ("retry it again") shows the browser's "tick this box"; a card already
// asking gets its "Yes" button focused, for Enter: never a retry on `r` alone.
// A compact row's Retry is on its line, or (retrying it again) in its card,
// unfolded for it; a question its card asks comes first.
function retryRun(run) {
  const runId = run.getAttribute("data-run-id");
  const buttons = [...runWhole(run).querySelectorAll("form.retry-form button[type=submit]")];
  const button =
    buttons.find((b) => b.closest(".retry-confirm")) ??
    buttons.find((b) => run.contains(b)) ??
    buttons[0];
  if (!button || button.disabled) {
    announce(`Run ${runId} has no Retry.`);
    return;
  }
  for (let folded; (folded = button.closest("details:not([open])")); ) folded.open = true;
  if (button.closest(".retry-confirm")) {
    button.focus();
    return;
  }
  button.click();
}

const SHORTCUTS = {
  "/": () => {
    const search =
      document.getElementById("id_q") ?? document.querySelector('main input[type="search"]');
    if (!search) return false;
    search.focus();
    search.select();
  },
  j: () => nextRun(1),
  k: () => nextRun(-1),
  x: () => {
    const box = runOf(document.activeElement)?.querySelector("input.bulk-pick");
    if (!box || box.getClientRects().length === 0) return false; // none, or not on this page
    box.click(); // ticks it and says so (change), as a click does
  },
  r: () => {
    const run = runOf(document.activeElement);
    if (!run) return false;
    retryRun(run);
  },
  "?": () => {
    const dialog = document.getElementById("keyboard-shortcuts");
    if (!dialog || dialog.open) return false;
    dialog.showModal();
  },
};

document.addEventListener("keydown", (event) => {
  if (event.defaultPrevented || event.ctrlKey || event.altKey || event.metaKey) return;
  if (typing(event.target) || document.querySelector("dialog[open]")) return;
  const shortcut = SHORTCUTS[event.key];
  if (!shortcut) return;
  if (shortcut() !== false) event.preventDefault();
});

// A ticket summary the person opened stays open when the part of the page
// holding it is redrawn (the run page's details follow a run that is going):
// it is being read, or copied.
let openSummaries = new Set();
document.addEventListener("htmx:beforeSwap", () => {
  openSummaries = new Set(
    [...document.querySelectorAll("details.ticket-summary[open][id]")].map((d) => d.id),
  );
});
document.addEventListener("htmx:afterSettle", () => {
  for (const id of openSummaries) {
    const details = document.getElementById(id);
    if (details && !details.open) details.open = true;
  }
});
