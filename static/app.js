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
