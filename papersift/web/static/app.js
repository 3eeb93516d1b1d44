// papersift: progressive enhancement only. Every action works as a plain form without this file;
// with it, upvotes and saves update in place through the JSON API, and a logged-in reader's page
// view is recorded with a POST (never a GET: no state changes on GET).
(function () {
  "use strict";
  var token = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";

  function send(method, url) {
    return fetch(url, { method: method, credentials: "same-origin",
                        headers: { "X-CSRF-Token": token, "Accept": "application/json" } })
      .then(function (r) { return r.json().then(function (body) { return { ok: r.ok, body: body }; }); });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.mark")) return;
    var button = form.querySelector("button");
    if (button.dataset.login) { return; }  // the form's redirect to the log-in page does the right thing
    event.preventDefault();
    var onField = form.querySelector('input[name="on"]');
    var turnOn = onField.value === "1";
    button.disabled = true;
    send(turnOn ? "POST" : "DELETE", form.dataset.api).then(function (res) {
      button.disabled = false;
      if (!res.ok) { form.submit(); return; }  // let the server explain (error page, log-in)
      var kind = form.dataset.api.split("/").pop();
      // the same paper may be listed twice on a page (e.g. in related papers): update every copy
      document.querySelectorAll('form.mark[data-api="' + form.dataset.api + '"]').forEach(function (f) {
        var b = f.querySelector("button");
        f.querySelector('input[name="on"]').value = turnOn ? "0" : "1";
        b.classList.toggle("on", turnOn);
        b.setAttribute("aria-pressed", turnOn ? "true" : "false");
        if (kind === "upvote") { b.querySelector(".count").textContent = res.body.upvotes; }
        else { b.querySelector(".label").textContent = turnOn ? "Saved" : "Save"; }
      });
    }, function () { button.disabled = false; form.submit(); });
  });

  // "not interested": the paper leaves the feed at once
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.dismiss")) return;
    event.preventDefault();
    send("POST", form.dataset.api).then(function (res) {
      if (!res.ok) { form.submit(); return; }
      var row = form.closest("li.paper-row");
      if (row) { row.remove(); }
    }, function () { form.submit(); });
  });

  var article = document.querySelector("article.paper[data-view]");
  if (article) { send("POST", article.dataset.view).catch(function () {}); }
})();
