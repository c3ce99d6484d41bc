// Refreshes the live parts of a page: every element with data-live="URL"
// has its content replaced by what URL answers, every data-every seconds
// (default 2), while the page is visible. Nothing else needs JavaScript.
(function () {
  "use strict";
  function refresh(el) {
    if (document.hidden) { return schedule(el); }
    fetch(el.dataset.live, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (resp) {
        if (!resp.ok) { throw new Error(String(resp.status)); }
        return resp.text();
      })
      .then(function (html) {
        el.innerHTML = html;
        el.dataset.updated = new Date().toISOString();
        el.removeAttribute("data-stale");
      })
      .catch(function () { el.setAttribute("data-stale", "true"); })
      .finally(function () { schedule(el); });
  }
  function schedule(el) {
    var every = parseFloat(el.dataset.every || "2");
    window.setTimeout(function () { refresh(el); }, every * 1000);
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(schedule);
  });
})();
