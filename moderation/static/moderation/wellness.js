/* Reviewer wellness in the admin (a static file: the pages run no inline script).
 *
 * - A blurred image (.blur-images .mod-img) is revealed by a click, or Enter/Space when it has
 *   focus; each reveal is counted as one image viewed (POST to the URL in
 *   <meta name="mod-viewed-url">, with the CSRF token in <meta name="mod-csrf">).
 * - With blurring off, the images a page shows are counted once when it loads.
 * - Keyboard shortcuts: a key pressed outside a form field clicks the element whose
 *   data-shortcut is that key (the review page: b ban, d dismiss, n next, v reveal all).
 */
(function () {
  "use strict";

  function meta(name) {
    var found = document.querySelector('meta[name="' + name + '"]');
    return found ? found.getAttribute("content") : "";
  }

  function count(views) {
    var url = meta("mod-viewed-url");
    if (!url || !views) return;
    var body = new FormData();
    body.append("views", String(views));
    fetch(url, {
      method: "POST",
      body: body,
      credentials: "same-origin",
      keepalive: true,
      headers: { "X-CSRFToken": meta("mod-csrf") },
    })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (data) {
        if (!data) return;
        document.querySelectorAll("[data-images-viewed]").forEach(function (el) {
          el.textContent = String(data.today);
        });
      })
      .catch(function () { /* counting must never get in the way of the page */ });
  }

  function blurred(img) {
    return document.body.classList.contains("blur-images") && !img.classList.contains("revealed");
  }

  function reveal(img) {
    if (!blurred(img)) return false;
    img.classList.add("revealed");
    img.setAttribute("aria-pressed", "true");
    img.removeAttribute("title");
    return true;
  }

  document.addEventListener(
    "click",
    function (event) {
      var img = event.target.closest ? event.target.closest(".mod-img") : null;
      if (!img || !blurred(img)) return;
      // The first click reveals; it does not follow a link the image sits in.
      event.preventDefault();
      event.stopPropagation();
      if (reveal(img)) count(1);
    },
    true
  );

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    var target = event.target;
    if (target.classList && target.classList.contains("mod-img") &&
        (event.key === "Enter" || event.key === " ")) {
      event.preventDefault();
      if (reveal(target)) count(1);
      return;
    }
    if (target.closest && target.closest("input, textarea, select, [contenteditable]")) return;
    // An open prompt (the ban reason) takes the keys: none reaches the page behind it.
    if (document.querySelector("dialog[open]")) return;
    if (event.key === "v") {
      var shown = 0;
      document.querySelectorAll(".mod-img").forEach(function (img) {
        if (reveal(img)) shown += 1;
      });
      count(shown);
      return;
    }
    var action = document.querySelector('[data-shortcut="' + event.key + '"]');
    if (action) {
      event.preventDefault();
      action.click();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    if (!document.body.classList.contains("blur-images")) {
      count(document.querySelectorAll(".mod-img").length);
    }
  });
})();
