// Placement pages: send the signed session token with every request (never a cookie: CSRF-safe).
(function () {
  function token() {
    var meta = document.querySelector('meta[name="session-token"]');
    return meta ? meta.content : "";
  }
  window.appFetch = function (url, options) {
    options = options || {};
    options.headers = Object.assign({"X-Session-Token": token(), "Accept": "application/json"},
                                    options.headers || {});
    return fetch(url, options).then(function (resp) {
      return resp.json().then(function (body) { return {ok: resp.ok, status: resp.status, body: body}; });
    });
  };
  document.addEventListener("click", function (event) {
    var button = event.target.closest('[data-action="resync"]');
    if (!button) { return; }
    button.disabled = true;
    window.appFetch("/api/registration/sync", {method: "POST"}).then(function (res) {
      var out = document.getElementById("resync-result");
      out.textContent = res.ok ? (res.body.applied.length + " ✓") : res.body.error_description;
      button.disabled = false;
    });
  });
})();

// Admin settings form: JSON to /api/settings; the server validates and answers field errors.
// This script loads in <head>: the form exists only once the document is parsed.
document.addEventListener("DOMContentLoaded", function () {
  var form = document.getElementById("settings");
  if (!form) { return; }
  function toggle() {
    form.querySelectorAll("[data-show-when]").forEach(function (box) {
      var rule = box.dataset.showWhen.split("=");
      box.hidden = form.elements[rule[0]].value !== rule[1];
    });
  }
  form.addEventListener("change", toggle);
  toggle();
  form.addEventListener("submit", function () {
    var data = {sms_credentials: {}};
    Array.prototype.forEach.call(form.elements, function (el) {
      if (!el.name) { return; }
      if (el.name.indexOf("cred.") === 0) {
        // Only the chosen gateway's credentials; blank secrets keep the stored value.
        if (!el.closest("fieldset").hidden) { data.sms_credentials[el.name.slice(5)] = el.value; }
        return;
      }
      if (el.type === "checkbox") { data[el.name] = el.checked; return; }
      if (el.type === "number") { data[el.name] = Number(el.value); return; }
      data[el.name] = el.value;
    });
    var out = document.getElementById("settings-result");
    window.appFetch("/api/settings", {method: "POST", headers: {"Content-Type": "application/json"},
                                      body: JSON.stringify(data)}).then(function (res) {
      out.className = res.ok ? "" : "error";
      out.textContent = res.ok ? "✓" : res.body.error_description;
    });
  });
});
