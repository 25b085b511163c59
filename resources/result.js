/* The result view's script: KaTeX over .math, block highlighting, clicks back to Qt (kept
   out of result.html: its policy allows no inline script). ocrSet and ocrHighlight are called
   from gui/result_view.py. */
"use strict";
function ocrMath(root) {
  if (typeof katex === "undefined") return;
  root.querySelectorAll(".math").forEach(function (el) {
    var tex = el.textContent;
    try {
      katex.render(tex, el, { displayMode: el.dataset.display === "1", throwOnError: false, trust: false });
    } catch (e) { el.textContent = tex; }
  });
}
function ocrHighlight(k, scroll) {
  document.querySelectorAll(".block.hl").forEach(function (el) { el.classList.remove("hl"); });
  if (k < 0) return;
  var el = document.querySelector('[data-block="' + k + '"]');
  if (!el) return;
  el.classList.add("hl");
  if (scroll) el.scrollIntoView({ block: "center" });
}
function ocrSet(html, k) {
  var c = document.getElementById("c");
  c.innerHTML = html;
  ocrMath(c);
  ocrHighlight(k, false);
}
document.addEventListener("click", function (e) {
  var b = e.target.closest ? e.target.closest("[data-block]") : null;
  if (b) console.log("ocrdesk:click:" + b.dataset.block);
});
