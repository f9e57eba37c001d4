/* Prompts on the review page (a static file: the pages run no inline script).
 *
 * A button with data-opens="<dialog id>" opens that <dialog> as a modal, with its first text
 * field focused and its suggested text selected: typing replaces it, Enter submits it, Escape
 * or "Cancel" closes the prompt and nothing is sent. The keyboard shortcuts (wellness.js)
 * click such a button like any other, so "b" opens the ban prompt.
 */
(function () {
  "use strict";

  document.addEventListener("click", function (event) {
    var opener = event.target.closest ? event.target.closest("[data-opens]") : null;
    if (!opener) return;
    var dialog = document.getElementById(opener.getAttribute("data-opens"));
    if (!dialog || typeof dialog.showModal !== "function" || dialog.open) return;
    event.preventDefault();
    dialog.showModal();
    var field = dialog.querySelector("input[type=text], textarea");
    if (field) {
      field.focus();
      field.select();
    }
  });
})();
