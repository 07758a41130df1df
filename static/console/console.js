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
  for (const box of document.querySelectorAll(`input[type=checkbox][name=run][form="${formId}"]`)) {
    box.checked = all.checked;
  }
});
