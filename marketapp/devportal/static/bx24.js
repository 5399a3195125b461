// BX24 for the emulator: the documented calls, routed to the portal shell by postMessage.
(function () {
  "use strict";
  var query = new URLSearchParams(location.search);
  var sid = query.get("APP_SID");
  var origin = (query.get("PROTOCOL") === "1" ? "https://" : "http://") + query.get("DOMAIN");
  var seq = 0, pending = {}, initData = null, initWaiters = [];

  window.addEventListener("message", function (ev) {
    var m = ev.data;
    if (!m || !m.bx24reply || ev.origin !== origin) return;
    var cb = pending[m.id];
    delete pending[m.id];
    if (cb) cb(m.result);
  });

  function send(cmd, params, cb) {
    var id = ++seq;
    if (cb) pending[id] = cb;
    window.parent.postMessage({bx24: true, id: id, sid: sid, cmd: cmd, params: params || {}}, origin);
  }

  // PHP-bracket query encoding, as batch command strings need it.
  function encode(params, prefix) {
    var parts = [];
    Object.keys(params || {}).forEach(function (key) {
      var name = prefix ? prefix + "[" + key + "]" : key, value = params[key];
      if (value !== null && typeof value === "object") parts.push(encode(value, name));
      else parts.push(encodeURIComponent(name) + "=" + encodeURIComponent(value === null ? "" : value));
    });
    return parts.filter(Boolean).join("&");
  }

  function Result(status, body, method, params) {
    this.status = status;
    this.answer = body;
    this.query = {method: method, data: params};
  }
  Result.prototype.data = function () { return this.answer.result; };
  Result.prototype.error = function () {
    if (this.answer.error === undefined) return false;
    var ans = this.answer, status = this.status;
    return {status: status, ex: ans, getError: function () { return ans; }, getStatus: function () { return status; },
            toString: function () { return ans.error + ": " + ans.error_description; }};
  };
  Result.prototype.error_description = function () { return this.answer.error_description; };
  Result.prototype.more = function () { return this.answer.next !== undefined; };
  Result.prototype.total = function () { return this.answer.total; };
  Result.prototype.time = function () { return this.answer.time; };
  Result.prototype.next = function (cb) {
    if (!this.more()) return false;
    BX24.callMethod(this.query.method, Object.assign({}, this.query.data, {start: this.answer.next}), cb);
    return true;
  };

  var BX24 = {
    init: function (cb) {
      if (initData) { cb(); return; }
      initWaiters.push(cb);
      if (initWaiters.length === 1) {
        send("init", {}, function (data) {
          initData = data;
          initWaiters.splice(0).forEach(function (f) { f(); });
        });
      }
    },
    placement: {
      info: function () { return initData ? {placement: initData.placement, options: initData.options} : {}; },
      call: function (command, params, cb) {
        if (typeof params === "function") { cb = params; params = {}; }
        send(command, params || {}, cb || function () {});
      },
      getInterface: function (cb) { cb({command: ["reloadData", "setPropertyValue"], event: []}); }
    },
    callMethod: function (method, params, cb) {
      send("callMethod", {method: method, params: params || {}, auth: initData.auth.access_token}, function (r) {
        if (cb) cb(new Result(r.status, r.body, method, params || {}));
      });
    },
    callBatch: function (calls, cb, halt) {
      var cmd = Array.isArray(calls) ? [] : {};
      Object.keys(calls).forEach(function (key) {
        var call = calls[key], method = Array.isArray(call) ? call[0] : call.method;
        var params = Array.isArray(call) ? call[1] : call.params;
        cmd[key] = method + "?" + encode(params);
      });
      BX24.callMethod("batch", {cmd: cmd, halt: halt ? 1 : 0}, function (res) {
        var body = res.data() || {}, out = Array.isArray(calls) ? [] : {};
        Object.keys(calls).forEach(function (key) {
          var ok = body.result && body.result[key] !== undefined;
          var answer = ok ? {result: body.result[key], total: (body.result_total || {})[key],
                             next: (body.result_next || {})[key], time: (body.result_time || {})[key]}
                          : ((body.result_error || {})[key] || {error: "", error_description: "not run"});
          out[key] = new Result(ok ? 200 : 400, answer, "batch", {});
        });
        if (cb) cb(out);
      });
    },
    selectCRM: function (params, cb) { send("selectCRM", params || {}, cb); },
    // The portal's employee pickers: one user ({id, name, photo, position, url, sub,
    // supervisor}) or a list of them (BX24.selectUser / BX24.selectUsers in the BX24.js docs).
    selectUser: function (cb) { send("selectUser", {multiple: false}, cb); },
    selectUsers: function (cb) { send("selectUsers", {multiple: true}, cb); },
    resizeWindow: function (width, height, cb) { send("resizeWindow", {width: width, height: height}, cb); },
    fitWindow: function (cb) {
      send("fitWindow", {width: "100%", height: document.documentElement.scrollHeight}, cb);
    },
    closeApplication: function (cb) { send("closeApplication", {}, cb); },
    // Opens a portal path (a CRM card …) in a slider over the application.
    openPath: function (path, cb) { send("openPath", {path: path}, cb); },
    installFinish: function () { send("installFinish", {}); },
    reloadWindow: function () { send("reloadWindow", {}); },
    getAuth: function () { return initData ? initData.auth : false; },
    refreshAuth: function (cb) { if (cb) cb(BX24.getAuth()); },
    getDomain: function () { return query.get("DOMAIN"); },
    getLang: function () { return query.get("LANG"); },
    isAdmin: function () { return !!(initData && initData.user_id === 1); }
  };
  window.BX24 = BX24;
})();
