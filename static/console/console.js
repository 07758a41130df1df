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

// A retry's answer must reach the person. A search, a filter or "Older runs"
// redraws every card of the runs page (they all target #run-results), so such
// results are not drawn over a retry: none is sent while a retry is being sent,
// and results asked for before the latest retry started (typed, then Retry
// clicked before the search went out, or answered late) are dropped rather
// than drawn over the retried card. hx-sync can't say this: it gives each
// element one queue, and searches must keep replacing one another while never
// cutting a retry short, nor retries each other.
let retriesSending = 0;
let lastRetryAt = -Infinity;

// The element that made the request (`detail.elt` is where the event fired).
function isRetry(detail) {
  const elt = detail.requestConfig?.elt ?? detail.elt;
  return elt instanceof Element && elt.matches("form.retry-form");
}

function redrawsOverARetry(detail) {
  if (!detail.target || detail.target.id !== "run-results") return false;
  const asked = detail.requestConfig?.triggeringEvent?.timeStamp ?? performance.now();
  return retriesSending > 0 || asked < lastRetryAt;
}

document.addEventListener("htmx:beforeRequest", (event) => {
  if (isRetry(event.detail)) {
    retriesSending += 1;
    lastRetryAt = performance.now();
  } else if (redrawsOverARetry(event.detail)) {
    event.preventDefault();
  }
});
document.addEventListener("htmx:beforeSwap", (event) => {
  if (redrawsOverARetry(event.detail)) event.detail.shouldSwap = false;
});
// Fired on the form, or on its nearest ancestor still in the page once its
// card has been swapped; also after an error or an abort.
document.addEventListener("htmx:afterRequest", (event) => {
  if (isRetry(event.detail)) retriesSending = Math.max(0, retriesSending - 1);
});
