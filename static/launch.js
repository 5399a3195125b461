// Launch pages: launcher (recipients, parameters, preview, launch), progress, my launches.
// Every request carries the page session (app.js's appFetch); preview and launch also carry the
// user's own Bitrix24 token, so records are read with the rep's rights.
(function () {
  "use strict";
  var T = {};
  var textsNode = document.getElementById("launch-texts");
  if (textsNode) { T = JSON.parse(textsNode.textContent); }

  function fmt(text, values) {
    return String(text || "").replace(/%\((\w+)\)s/g, function (_m, name) {
      return values && values[name] !== undefined ? values[name] : "";
    });
  }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") { node.textContent = attrs[k]; } else { node.setAttribute(k, attrs[k]); }
    });
    (children || []).forEach(function (c) { if (c) { node.appendChild(c); } });
    return node;
  }
  function bx() { return window.BX24 || null; }
  function fit() { if (bx() && BX24.fitWindow) { BX24.fitWindow(); } }
  function userToken() {
    var auth = bx() && BX24.getAuth ? BX24.getAuth() : null;
    return auth && auth.access_token ? auth.access_token : "";
  }
  function api(url, method, body) {
    var options = {method: method || "GET", headers: {"X-User-Token": userToken()}};
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    return window.appFetch(url, options).catch(function () {
      return {ok: false, status: 0, body: {error_description: T.error}};
    });
  }
  function navigate(path) {
    var form = document.getElementById("nav-form");
    // BX24.js finds its portal from the frame's query (DOMAIN, APP_SID …): keep it.
    form.action = path + window.location.search;
    form.submit();
  }
  function openPath(path) {
    if (bx() && BX24.openPath) { BX24.openPath(path); } else { window.open(path, "_blank"); }
  }
  function recordLink(name, path) {
    var a = el("a", {href: "#", "data-path": path, text: name});
    a.className = "record-link";
    return a;
  }

  document.addEventListener("click", function (event) {
    var nav = event.target.closest("[data-nav]");
    if (nav) { navigate(nav.dataset.nav); return; }
    var link = event.target.closest("a.record-link");
    if (link) { event.preventDefault(); openPath(link.dataset.path); }
  });

  // -- launcher ------------------------------------------------------------------------------

  function Launcher(root) {
    this.root = root;
    this.entity = root.dataset.entity;
    this.picked = [];
    this.maxPicked = Number(root.dataset.maxPicked || 500);
    var self = this;
    root.querySelectorAll('input[name="scenario"]').forEach(function (radio) {
      radio.addEventListener("change", function () { self.showForm(radio.value); });
    });
    var choose = document.getElementById("choose-records");
    if (choose) { choose.addEventListener("click", function () { self.choose(); }); }
    root.querySelectorAll('input[name="recipients"]').forEach(function (radio) {
      radio.addEventListener("change", function () { self.showRecipients(); });
    });
    this.filter = new FilterBuilder(this);
    root.querySelectorAll("form.launch-form").forEach(function (form) { self.wire(form); });
    root.querySelectorAll("[data-choose-employee]").forEach(function (button) { chooseEmployee(button); });
  }
  Launcher.prototype.recipients = function () {
    var which = this.root.querySelector('input[name="recipients"]:checked');
    return which ? which.value : "picked";
  };
  Launcher.prototype.showRecipients = function () {
    var filter = this.recipients() === "filter";
    document.getElementById("filter-box").hidden = !filter;
    if (filter) { this.filter.open(); }
    fit();
  };
  Launcher.prototype.showForm = function (key) {
    this.root.querySelectorAll("form.launch-form").forEach(function (form) {
      form.hidden = form.dataset.scenario !== key;
    });
    fit();
  };
  Launcher.prototype.choose = function () {
    var self = this, type = this.entity.toLowerCase();
    if (!bx()) { return; }
    var value = {};
    value[type] = this.picked.map(function (r) { return r.id; });
    BX24.selectCRM({entityType: [type], multiple: true, value: value}, function (result) {
      if (!result || !result[type]) { return; }  // cancelled: keep the choice
      self.picked = result[type].map(function (r) { return {id: String(r.id), title: r.title || r.id}; });
      self.renderPicked();
      var radio = self.root.querySelector('input[name="recipients"][value="picked"]');
      if (radio) { radio.checked = true; }
    });
  };
  Launcher.prototype.renderPicked = function () {
    var list = document.getElementById("picked");
    list.textContent = "";
    var type = this.entity.toLowerCase();
    this.picked.forEach(function (r) {
      var id = r.id.split("_").pop();
      list.appendChild(el("li", {}, [recordLink(r.title, "/crm/" + type + "/details/" + id + "/")]));
    });
    var count = document.getElementById("picked-count");
    count.textContent = this.picked.length ? fmt(T.chosen, {n: this.picked.length}) : T.none_chosen;
    count.className = this.picked.length > this.maxPicked ? "error" : "muted";
    if (this.picked.length > this.maxPicked) { count.textContent = fmt(T.too_many, {n: this.maxPicked}); }
    fit();
  };
  Launcher.prototype.ids = function () {
    if (this.recipients() === "record") { return [this.root.dataset.record]; }
    return this.picked.map(function (r) { return r.id; });
  };
  Launcher.prototype.values = function (form) {
    var values = {};
    form.querySelectorAll(".field[data-param]").forEach(function (box) {
      var input = box.querySelector("input, textarea, select");
      values[box.dataset.param] = input.type === "checkbox" ? input.checked : input.value;
    });
    return values;
  };
  Launcher.prototype.payload = function (form) {
    var body = {context: this.root.dataset.context, scenario: form.dataset.scenario,
                recipients: this.recipients(), params: this.values(form)};
    if (body.recipients === "filter") { body.filter = this.filter.rows(); } else { body.ids = this.ids(); }
    return body;
  };
  Launcher.prototype.showErrors = function (form, res) {
    form.querySelectorAll(".field-error").forEach(function (n) { n.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
    var general = form.querySelector(".form-error");
    general.textContent = res && !res.ok ? (res.body.error_description || T.error) : "";
    var fields = (res && res.body && res.body.fields) || {};
    Object.keys(fields).forEach(function (key) {
      var box = form.querySelector('.field[data-param="' + CSS.escape(key) + '"]');
      if (!box) { general.textContent += " " + key + ": " + fields[key]; return; }
      box.querySelector(".field-error").textContent = fields[key];
      box.querySelector("input, textarea, select").setAttribute("aria-invalid", "true");
    });
    fit();
  };
  Launcher.prototype.ready = function (form) {
    var filter = this.recipients() === "filter";
    if (filter ? this.filter.rows().length : this.ids().length) { return true; }
    this.showErrors(form, {ok: false, body: {error_description: filter ? T.filter_first : T.choose_first}});
    return false;
  };
  Launcher.prototype.wire = function (form) {
    var self = this, lastText = null;
    form.querySelector('[data-action="preview"]').addEventListener("click", function () {
      if (!self.ready(form)) { return; }
      var out = form.querySelector(".preview");
      out.hidden = false;
      out.textContent = T.working;
      api("/api/launch/preview", "POST", self.payload(form)).then(function (res) {
        self.showErrors(form, res);
        out.textContent = "";
        if (res.ok) { renderPreview(out, res.body); } else { out.hidden = true; }
        if (!res.ok && res.body && res.body.error === "bad_filter") { self.filter.showError(res.body); }
        fit();
      });
    });
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      if (!self.ready(form)) { return; }
      var button = form.querySelector('[data-action="launch"]');
      button.disabled = true;  // a second click would send the same key anyway
      var body = self.payload(form);
      body.idempotency_key = form.dataset.idempotencyKey;
      api("/api/launch/start", "POST", body).then(function (res) {
        self.showErrors(form, res);
        if (!res.ok) {
          button.disabled = false;
          if (res.body && res.body.error === "bad_filter") { self.filter.showError(res.body); }
          return;
        }
        if (self.root.dataset.fromList && bx()) { BX24.placement.call("reloadData"); }
        navigate("/placements/launches/" + res.body.id);
      });
    });
    form.querySelectorAll("input, textarea").forEach(function (input) {
      if (input.type === "text" || input.tagName === "TEXTAREA") {
        input.addEventListener("focus", function () { lastText = input; });
      }
      if (input.dataset.sms) { watchSms(input); }
    });
    form.querySelectorAll("[data-insert]").forEach(function (chip) {
      chip.addEventListener("click", function () {
        var target = lastText || form.querySelector("textarea, input[type=text]");
        if (!target) { return; }
        var start = target.selectionStart || 0, end = target.selectionEnd || 0;
        target.value = target.value.slice(0, start) + chip.dataset.insert + target.value.slice(end);
        target.focus();
        target.selectionStart = target.selectionEnd = start + chip.dataset.insert.length;
        target.dispatchEvent(new Event("input"));
      });
    });
  };

  // A CRM filter built in the page: field, condition and value rows; the count follows as
  // the rows change (debounced; an answer to an older filter is dropped).
  function FilterBuilder(launcher) {
    this.launcher = launcher;
    this.box = document.getElementById("filter-box");
    this.list = document.getElementById("filter-rows");
    this.fields = null;
    this.timer = null;
    this.asked = 0;
    var self = this;
    if (!this.box) { return; }
    document.getElementById("add-condition").addEventListener("click", function () { self.add(true); });
    this.list.addEventListener("change", function (e) { self.changed(e.target); });
    this.list.addEventListener("input", function (e) { self.changed(e.target); });
    this.list.addEventListener("click", function (e) {
      var remove = e.target.closest(".c-remove");
      if (!remove) { return; }
      var row = remove.closest("li"), next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      var focus = next ? next.querySelector(".c-field") : document.getElementById("add-condition");
      focus.focus();
      self.schedule();
    });
  }
  FilterBuilder.prototype.open = function () {
    var self = this;
    if (this.fields) { return; }
    this.fields = [];
    api("/api/launch/fields", "POST", {context: this.launcher.root.dataset.context}).then(function (res) {
      if (!res.ok) { self.showError(res.body); self.fields = null; return; }
      self.fields = res.body.fields;
      if (!self.list.children.length) { self.add(false); }
    });
  };
  FilterBuilder.prototype.add = function (focus) {
    var row = document.getElementById("condition-template").content.firstElementChild.cloneNode(true);
    var select = row.querySelector(".c-field");
    (this.fields || []).forEach(function (f) {
      select.appendChild(el("option", {value: f.code, text: f.label + " (" + f.code + ")"}));
    });
    this.list.appendChild(row);
    this.fit(row);
    if (focus) { select.focus(); }
    this.schedule();
    fit();
  };
  FilterBuilder.prototype.field = function (code) {
    return (this.fields || []).filter(function (f) { return f.code === code; })[0] || {};
  };
  // A list field offers its values; "is empty" needs no value.
  FilterBuilder.prototype.fit = function (row) {
    var field = this.field(row.querySelector(".c-field").value);
    var op = row.querySelector(".c-op").value, choice = row.querySelector(".c-choice");
    var input = row.querySelector(".c-value"), items = field.items || [];
    if (choice.dataset.field !== field.code) {
      choice.textContent = "";
      items.forEach(function (i) { choice.appendChild(el("option", {value: i.value, text: i.label})); });
      choice.dataset.field = field.code || "";
    }
    choice.hidden = op === "empty" || !items.length;
    input.hidden = op === "empty" || !!items.length;
    var kinds = {integer: "number", double: "number", date: "date", datetime: "date"};
    input.type = kinds[field.type] || "text";
  };
  FilterBuilder.prototype.changed = function (target) {
    var row = target.closest("li");
    if (row && (target.classList.contains("c-field") || target.classList.contains("c-op"))) { this.fit(row); }
    this.schedule();
  };
  FilterBuilder.prototype.rows = function () {
    var out = [];
    this.list.querySelectorAll("li.condition").forEach(function (row) {
      var choice = row.querySelector(".c-choice"), input = row.querySelector(".c-value");
      out.push({field: row.querySelector(".c-field").value, op: row.querySelector(".c-op").value,
                value: choice.hidden ? input.value : choice.value});
    });
    return out;
  };
  FilterBuilder.prototype.schedule = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = setTimeout(function () { self.count(); }, 400);
  };
  FilterBuilder.prototype.count = function () {
    var self = this, asked = ++this.asked, out = document.getElementById("filter-count");
    var rows = this.rows();
    this.showError(null);
    if (!rows.length) { out.textContent = ""; delete out.dataset.count; return; }
    out.textContent = T.counting;
    api("/api/launch/count", "POST", {context: this.launcher.root.dataset.context, filter: rows})
      .then(function (res) {
        if (asked !== self.asked) { return; }  // the filter changed meanwhile
        if (!res.ok) { out.textContent = ""; delete out.dataset.count; self.showError(res.body); return; }
        out.dataset.count = res.body.count;
        out.textContent = fmt(T.matching, {n: res.body.count});
        fit();
      });
  };
  FilterBuilder.prototype.showError = function (body) {
    var node = document.getElementById("filter-error");
    this.list.querySelectorAll("[aria-invalid]").forEach(function (n) { n.removeAttribute("aria-invalid"); });
    node.textContent = body ? (body.error_description || T.error) : "";
    var row = body && body.row !== undefined && body.row !== null ? this.list.children[body.row] : null;
    if (row) { row.querySelector(".c-field").setAttribute("aria-invalid", "true"); }
  };

  // An employee parameter: the portal's user picker (BX24.selectUser) fills in the ID.
  function chooseEmployee(button) {
    var input = document.getElementById(button.dataset.chooseEmployee);
    var shown = document.getElementById(button.dataset.chooseEmployee + "-name");
    button.addEventListener("click", function () {
      if (!bx() || !BX24.selectUser) { input.focus(); return; }
      BX24.selectUser(function (user) {
        if (!user || !user.id) { button.focus(); return; }
        input.value = String(user.id);
        shown.textContent = fmt(T.chosen_employee, {name: user.name || user.id});
        input.dispatchEvent(new Event("input"));
        button.focus();
      });
    });
  }

  function watchSms(input) {
    var out = document.getElementById(input.id + "-size"), timer = null;
    function measure() {
      window.appFetch("/api/sms/size", {method: "POST", headers: {"Content-Type": "application/json"},
                                        body: JSON.stringify({text: input.value})}).then(function (res) {
        if (!res.ok) { return; }
        out.dataset.segments = res.body.segments;
        out.textContent = fmt(T.characters, {chars: res.body.characters, segments: res.body.segments,
                                             encoding: res.body.encoding});
      });
    }
    input.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(measure, 250); });
    measure();
  }

  function stat(label, value, name) {
    var box = el("div", {"data-stat": name}, [el("dt", {text: label}), el("dd", {text: String(value)})]);
    return box;
  }

  function renderPreview(out, data) {
    var stats = el("dl", {"class": "counters"}, [
      stat(T.records, data.records, "records"),
      stat(T.will_act, data.outcomes.ready, "ready"),
      stat(T.skipped, data.outcomes.skipped, "skipped"),
      stat(T.failed, data.outcomes.failed, "failed"),
      stat(T.sms_segments, data.sms_segments, "sms_segments"),
      stat(T.eta, fmt(T.seconds, {n: Math.ceil(data.eta.seconds || 0)}), "eta")
    ]);
    out.appendChild(stats);
    if (data.matching !== undefined) {
      out.appendChild(el("p", {"class": "muted", "data-matching": String(data.matching),
                               text: fmt(T.preview_first, {shown: data.records, n: data.matching})}));
    }
    out.appendChild(el("h3", {text: T.reasons}));
    if (!data.reasons.length) { out.appendChild(el("p", {"class": "muted", text: T.no_skips})); }
    data.reasons.forEach(function (group) {
      var list = el("ul");
      group.records.forEach(function (r) {
        list.appendChild(el("li", {}, [recordLink(r.name, r.path), el("span", {"class": "muted", text: " — " + r.message})]));
      });
      var summary = el("summary", {text: group.label + " (" + group.count + ")"});
      out.appendChild(el("details", {"class": "reason", "data-reason": group.reason, open: ""}, [summary, list]));
    });
    if (data.samples.length) { out.appendChild(el("h3", {text: T.samples})); }
    data.samples.forEach(function (s) {
      var box = el("div", {"class": "sample", "data-type": s.type}, [el("strong", {text: s.type + " · " + s.record})]);
      if (s.to || s.phone) { box.appendChild(el("div", {text: T.to + ": " + (s.to || s.phone)})); }
      if (s.subject) { box.appendChild(el("div", {text: T.subject + ": " + s.subject})); }
      var text = s.text || s.body || s.message || s.title || (s.after ? JSON.stringify(s.after) : "");
      if (text) {
        // E-mail bodies are HTML: shown as their text, never as markup.
        box.appendChild(el("pre", {text: s.body ? htmlText(s.body) : text}));
      }
      if (s.segments) { box.appendChild(el("small", {text: "SMS: " + s.segments})); }
      out.appendChild(box);
    });
  }
  function htmlText(html) {
    var doc = new DOMParser().parseFromString(String(html), "text/html");
    return doc.body.textContent || "";
  }

  // -- progress ------------------------------------------------------------------------------

  function Progress(root) {
    this.root = root;
    this.id = root.dataset.launch;
    var self = this;
    root.querySelector('[data-action="stop"]').addEventListener("click", function () { self.stop(); });
    root.querySelector('[data-action="undo"]').addEventListener("click", function () { self.undo(); });
    root.querySelector('[data-action="csv"]').addEventListener("click", function () { self.csv(); });
    var close = root.querySelector('[data-action="close"]');
    if (close) {
      close.addEventListener("click", function () { if (bx() && BX24.closeApplication) { BX24.closeApplication(); } });
    }
    var search = document.getElementById("log-search"), timer = null;
    search.addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(function () { self.log(); }, 250); });
    this.poll();
  }
  Progress.prototype.base = function () { return "/api/launch/" + this.id; };
  // One poll chain at a time (Stop and Undo poll at once); it ends when the launch is no
  // longer active, or on an answer that will not change by asking again (session gone, 404).
  Progress.prototype.poll = function () {
    var self = this;
    clearTimeout(this.timer);
    this.timer = null;
    api(this.base() + "/status").then(function (res) {
      if (res.ok) { self.render(res.body); self.showError(null); } else { self.showError(res); }
      self.log();
      var final = res.status >= 400 && res.status < 500;
      if (!final && (!res.ok || res.body.active) && !self.timer) {
        self.timer = setTimeout(function () { self.poll(); }, 1500);
      }
    });
  };
  Progress.prototype.showError = function (res) {
    var node = document.getElementById("progress-error");
    node.textContent = res ? ((res.body && res.body.error_description) || T.error) : "";
  };
  Progress.prototype.render = function (s) {
    var state = document.getElementById("state");
    state.dataset.state = s.state;
    state.textContent = T["state_" + s.state] || s.state;
    var percent = Math.round((s.progress || 0) * 100);
    document.getElementById("bar").style.width = percent + "%";
    this.root.querySelector('[role="progressbar"]').setAttribute("aria-valuenow", percent);
    var sum = function (o) { return Object.keys(o || {}).reduce(function (a, k) { return a + o[k]; }, 0); };
    document.getElementById("c-total").textContent = s.total;
    document.getElementById("c-done").textContent = s.counters.done;
    document.getElementById("c-waiting").textContent = s.counters.waiting;
    document.getElementById("c-skipped").textContent = sum(s.counters.skipped);
    document.getElementById("c-failed").textContent = sum(s.counters.failed);
    document.getElementById("c-stopped").textContent = s.counters.stopped;
    document.getElementById("c-eta").textContent = s.active && s.eta && s.eta.seconds !== undefined
      ? fmt(T.seconds, {n: Math.ceil(s.eta.seconds)}) : "—";
    this.stepLabels = s.step_labels || {};
    var steps = document.getElementById("steps");
    steps.textContent = "";
    Object.keys(s.steps).forEach(function (path) {
      var c = s.steps[path], finished = c.done + c.stopped + sum(c.skipped) + sum(c.failed);
      var width = s.total ? Math.round(100 * finished / s.total) : 0;
      var label = (s.step_labels || {})[path] || (s.step_types || {})[path] || "";
      var bar = el("div", {"class": "bar small"}, [el("span", {style: "width: " + width + "%"})]);
      steps.appendChild(el("li", {"data-step": path}, [
        el("span", {text: label + " · " + path + " — " + finished + "/" + s.total}), bar]));
    });
    var errors = document.getElementById("errors");
    if (s.errors.length) {
      errors.textContent = "";
      s.errors.forEach(function (e) {
        errors.appendChild(el("li", {}, [recordLink(e.record || e.entity_type + " " + e.entity_id, e.path),
                                        el("span", {text: " " + (e.label || e.reason) + ": " + e.message})]));
      });
    }
    this.root.querySelector('[data-action="stop"]').disabled = !s.active;
    fit();
  };
  Progress.prototype.log = function () {
    var labels = this.stepLabels || {};
    var q = document.getElementById("log-search").value;
    api(this.base() + "/log?q=" + encodeURIComponent(q)).then(function (res) {
      if (!res.ok) { return; }
      var body = document.getElementById("log");
      body.textContent = "";
      if (!res.body.length) { body.appendChild(el("tr", {}, [el("td", {colspan: "5", "class": "muted", text: T.no_log})])); }
      res.body.forEach(function (e) {
        body.appendChild(el("tr", {"data-kind": e.kind}, [
          el("td", {text: e.at.replace("T", " ").slice(0, 19)}),
          el("td", {}, [recordLink(e.record || e.entity_type + " " + e.entity_id, e.path)]),
          el("td", {text: labels[e.step] || e.step}),
          el("td", {text: (e.kind_label || e.kind) + (e.reason ? " · " + (e.label || e.reason) : "")}),
          el("td", {text: e.message})
        ]));
      });
      fit();
    });
  };
  Progress.prototype.stop = function () {
    var self = this, button = this.root.querySelector('[data-action="stop"]');
    if (button.disabled || !window.confirm(T.confirm_stop)) { return; }
    button.disabled = true;  // polling enables it again while the launch is active
    api(this.base() + "/stop", "POST", {}).then(function (res) {
      self.showError(res.ok ? null : res);
      self.poll();
    });
  };
  Progress.prototype.undo = function () {
    var self = this, out = document.getElementById("undo-report");
    var button = this.root.querySelector('[data-action="undo"]');
    if (button.disabled || !window.confirm(T.confirm_undo)) { return; }
    button.disabled = true;
    out.textContent = T.working;
    api(this.base() + "/undo", "POST", {}).then(function (res) {
      button.disabled = false;
      out.textContent = "";
      var lines = res.ok ? res.body.lines : [res.body.error_description || T.error];
      lines.forEach(function (line) { out.appendChild(el("li", {text: line})); });
      self.poll();
    });
  };
  Progress.prototype.csv = function () {
    var q = document.getElementById("log-search").value, id = this.id;
    var token = document.querySelector('meta[name="session-token"]').content;
    var self = this;
    fetch(this.base() + "/log.csv?q=" + encodeURIComponent(q), {headers: {"X-Session-Token": token}})
      .then(function (resp) {
        // An error answer is JSON with a message: shown, never saved as the CSV.
        if (!resp.ok) { return resp.json().then(function (body) { throw body; }); }
        return resp.blob();
      })
      .then(function (blob) {
        var a = el("a", {href: URL.createObjectURL(blob), download: "launch-" + id + ".csv"});
        document.body.appendChild(a);
        a.click();
        a.remove();
      })
      .catch(function (body) { self.showError({body: body && body.error_description ? body : {}}); });
  };

  function start() {
    var launcher = document.getElementById("launcher");
    if (launcher && launcher.dataset.entity) { new Launcher(launcher); }
    var progress = document.getElementById("progress");
    if (progress) { new Progress(progress); }
    fit();
  }
  function boot() {
    if (bx() && BX24.init) { BX24.init(start); } else { start(); }
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", boot); } else { boot(); }
})();
