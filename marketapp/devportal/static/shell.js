// The portal side of the emulator's CRM shell: menus, the slider, and the BX24 postMessage bridge.
(function () {
  "use strict";
  var user = document.body.dataset.user || "1";
  var slider = document.getElementById("slider");
  var frame = document.getElementById("slider-frame");
  var dialog = document.getElementById("dialog");

  function post(url, body) {
    return fetch(url, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  }

  function openApp(client, placement, placementId, options, title) {
    var q = new URLSearchParams({client_id: client, placement: placement, user: user,
                                 placement_id: placementId || "", options: options || "{}"});
    slider.style.display = "block";
    document.getElementById("slider-title").textContent = title || "";
    frame.src = "/_shell/frame?" + q.toString();
  }

  function closeSlider() {
    slider.style.display = "none";
    frame.src = "about:blank";
  }

  document.addEventListener("click", function (e) {
    var button = e.target.closest(".menu-button");
    document.querySelectorAll(".menu.open").forEach(function (m) {
      if (!button || m !== button.parentNode) m.classList.remove("open");
    });
    if (button) { button.parentNode.classList.toggle("open"); return; }
    var item = e.target.closest(".placement-item");
    if (item) {
      openApp(item.dataset.client, item.dataset.placement, item.dataset.placementId, item.dataset.options,
              item.textContent.trim());
    }
    var settings = e.target.closest(".robot-settings-item");
    if (settings) {
      var q = new URLSearchParams({client_id: settings.dataset.client, robot: settings.dataset.code,
                                   document: settings.dataset.document, user: user});
      slider.style.display = "block";
      document.getElementById("slider-title").textContent = settings.dataset.code;
      frame.src = "/_shell/frame?" + q.toString();
    }
    var robot = e.target.closest(".robot-item");
    if (robot) {
      post("/_shell/run-robot", {client_id: robot.dataset.client, code: robot.dataset.code,
                                 document_id: robot.dataset.document})
        .then(function (r) { return r.json(); })
        .then(function (d) { robot.textContent = robot.dataset.code + " → " + d.workflow_id; });
    }
  });
  document.getElementById("slider-close").onclick = closeSlider;

  var appPage = document.getElementById("app-page");
  if (appPage) {
    slider.style.width = "100%";
    openApp(appPage.dataset.client, "DEFAULT", "", "{}", "Application");
  }

  function recordUi(m, params) { return post("/_shell/ui", {app_sid: m.sid, command: m.cmd, params: params || {}}); }

  // Record titles are CRM data (a contact may be named "<script>…"): text, never markup.
  function esc(text) {
    return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;");
  }

  function selectCRM(m, reply) {
    var wanted = (m.params.entityType || ["lead", "contact", "company", "deal"]);
    fetch("/_shell/select-crm").then(function (r) { return r.json(); }).then(function (data) {
      var html = "<h3>Select CRM records</h3>";
      wanted.forEach(function (type) {
        (data[type] || []).forEach(function (row) {
          html += '<label><input type="checkbox" data-type="' + type + '" data-id="' + esc(row.id) + '" data-title="' +
                  esc(row.title) + '"> ' + esc(row.id) + " " + esc(row.title) + "</label><br>";
        });
      });
      dialog.innerHTML = html + '<button id="select-ok">Select</button> <button id="select-cancel">Cancel</button>';
      dialog.style.display = "block";
      document.getElementById("select-ok").onclick = function () {
        var out = {lead: [], contact: [], company: [], deal: [], quote: []};
        dialog.querySelectorAll("input:checked").forEach(function (box) {
          out[box.dataset.type].push({id: box.dataset.id, title: box.dataset.title});
        });
        dialog.style.display = "none";
        reply(out);
      };
      document.getElementById("select-cancel").onclick = function () { dialog.style.display = "none"; reply({}); };
    });
  }

  // BX24.selectUser(s): the portal's active employees; one answer, or a list for selectUsers.
  function selectUsers(m, reply) {
    var multiple = m.cmd === "selectUsers";
    fetch("/_shell/select-users").then(function (r) { return r.json(); }).then(function (users) {
      var type = multiple ? "checkbox" : "radio";
      var html = "<h3>Select employees</h3>";
      users.forEach(function (u) {
        html += '<label><input type="' + type + '" name="user" data-user="' + u.id + '"> ' +
                u.name.replace(/</g, "&lt;") + "</label><br>";
      });
      dialog.innerHTML = html + '<button id="select-ok">Select</button> <button id="select-cancel">Cancel</button>';
      dialog.style.display = "block";
      document.getElementById("select-ok").onclick = function () {
        var chosen = [];
        dialog.querySelectorAll("input:checked").forEach(function (box) {
          chosen.push(users.filter(function (u) { return String(u.id) === box.dataset.user; })[0]);
        });
        dialog.style.display = "none";
        reply(multiple ? chosen : (chosen[0] || null));
      };
      document.getElementById("select-cancel").onclick = function () {
        dialog.style.display = "none";
        reply(multiple ? [] : null);
      };
    });
  }

  window.addEventListener("message", function (ev) {
    var m = ev.data;
    if (!m || !m.bx24) return;
    function reply(result) { ev.source.postMessage({bx24reply: true, id: m.id, result: result}, "*"); }
    switch (m.cmd) {
      case "init":
        fetch("/_shell/sid/" + m.sid).then(function (r) { return r.json(); }).then(reply);
        break;
      case "callMethod":
        post("/rest/" + m.params.method, Object.assign({}, m.params.params || {}, {auth: m.params.auth}))
          .then(function (r) { return r.json().then(function (b) { reply({status: r.status, body: b}); }); });
        break;
      case "installFinish":
        recordUi(m).then(function () { reply(true); closeSlider(); location.reload(); });
        break;
      case "reloadWindow":  // the whole page: the app's form is posted again with fresh tokens
        recordUi(m).then(function () { reply(true); location.reload(); });
        break;
      case "resizeWindow":
        frame.style.height = m.params.height + "px";
        recordUi(m, m.params).then(function () { reply({width: m.params.width, height: m.params.height}); });
        break;
      case "closeApplication":
        recordUi(m).then(function () { reply(true); closeSlider(); });
        break;
      case "selectCRM":
        recordUi(m, m.params).then(function () { selectCRM(m, reply); });
        break;
      case "selectUser":
      case "selectUsers":
        recordUi(m, m.params).then(function () { selectUsers(m, reply); });
        break;
      default:  // reloadData, setPropertyValue, fitWindow ... are recorded; unknown ones are ignored
        recordUi(m, m.params).then(function () { reply(true); });
    }
  });
})();
