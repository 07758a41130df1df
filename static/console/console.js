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
