// mailgate console: the only script, served from the console itself (CSP: script-src 'self').
// Asks before a destructive action; a form with data-confirm is sent only once confirmed.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute && form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
