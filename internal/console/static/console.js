// otter console: the few behaviours htmx does not cover. No inline script
// runs (the content security policy forbids it), so everything is wired
// here on page load.
(function () {
  "use strict";

  // A task button replaces itself (pause becomes resume): move the focus
  // to the outcome next to the buttons, so that keyboard users keep their
  // place and hear what happened.
  document.addEventListener("htmx:afterSettle", function (e) {
    var cfg = e.detail.requestConfig;
    if (!cfg || cfg.verb !== "post" || !e.detail.target || e.detail.target.id !== "live") { return; }
    var outcome = document.getElementById("action-error") || document.getElementById("action-notice");
    if (outcome) { outcome.focus(); }
  });

  // Firmware upload: stream the file as the request body with
  // XMLHttpRequest, whose upload progress drives the progress bar.
  function fieldsToQuery(form) {
    var q = new URLSearchParams();
    ["product", "module", "version", "from", "sha256", "description"].forEach(function (name) {
      var v = form.elements[name].value.trim();
      if (v !== "") { q.set(name, v); }
    });
    ["verify_required", "allow_downgrade"].forEach(function (name) {
      if (form.elements[name].checked) { q.set(name, "true"); }
    });
    form.elements.params.value.split(/\r?\n/).forEach(function (line) {
      line = line.trim();
      if (line !== "") { q.append("param", line); }
    });
    return q;
  }

  // fieldOf picks the form field an API message is about.
  function fieldOf(problem) {
    var d = (problem.detail || "").toLowerCase();
    var rules = [
      ["sha256", /sha-?256/], ["from", /from-version/], ["param", /^param/], ["description", /^description/],
      ["module", /^module/], ["product", /^product|product .* does not exist/], ["version", /version/],
      ["file", /body is empty|larger than|file/]
    ];
    if (problem.code === "too_large") { return "file"; }
    for (var i = 0; i < rules.length; i++) {
      if (rules[i][1].test(d)) { return rules[i][0]; }
    }
    return "";
  }

  function showUploadError(form, problem) {
    var field = fieldOf(problem);
    var msg = problem.detail || problem.title || "The upload failed.";
    msg = msg.charAt(0).toUpperCase() + msg.slice(1);
    var slot = field && document.getElementById("err-" + field);
    if (slot) {
      slot.textContent = msg;
      var input = form.elements[field === "param" ? "params" : field];
      if (input && input.focus) { input.setAttribute("aria-invalid", "true"); input.focus(); }
    } else {
      var box = document.getElementById("upload-error");
      box.textContent = msg;
      box.hidden = false;
    }
  }

  function clearUploadErrors(form) {
    form.querySelectorAll(".field-error").forEach(function (el) { el.textContent = ""; });
    form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
    var box = document.getElementById("upload-error");
    box.hidden = true;
    box.textContent = "";
  }

  function upload(form) {
    var file = form.elements.file.files[0];
    var bar = document.getElementById("upload-progress");
    var status = document.getElementById("upload-status");
    var button = document.getElementById("upload-button");
    clearUploadErrors(form);
    if (!file) {
      showUploadError(form, { detail: "Choose the firmware file to upload.", code: "too_large" });
      return;
    }
    var xhr = new XMLHttpRequest();
    xhr.open("POST", "/firmware/upload?" + fieldsToQuery(form).toString());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        var pct = Math.floor(e.loaded * 100 / e.total);
        bar.value = pct;
        bar.textContent = pct + "%";
        bar.dataset.sent = String(pct);
        status.textContent = "Uploading: " + pct + "% of " + file.size + " bytes";
      }
    });
    xhr.addEventListener("load", function () {
      button.disabled = false;
      var body = null;
      try { body = JSON.parse(xhr.responseText); } catch (err) { body = null; }
      if (xhr.status === 201 && body && body.id) {
        bar.value = 100;
        bar.textContent = "100%";
        status.textContent = "Uploaded: 100%. Firmware " + body.version + " is stored and signed.";
        var done = document.getElementById("upload-done");
        done.textContent = "";
        var a = document.createElement("a");
        a.href = "/firmware/" + body.id;
        a.id = "uploaded-link";
        a.textContent = "Open firmware #" + body.id + " (" + body.product + " " + body.module + " " + body.version + ")";
        done.appendChild(a);
        done.hidden = false;
        a.focus();
        return;
      }
      bar.value = 0;
      status.textContent = "Nothing was kept.";
      showUploadError(form, body || { detail: "The server answered " + xhr.status + " " + xhr.statusText + "." });
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      showUploadError(form, { detail: "The connection to the server was lost during the upload; nothing was kept." });
    });
    button.disabled = true;
    status.textContent = "Uploading…";
    xhr.send(file);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.querySelector("form[data-upload]");
    if (form) {
      form.addEventListener("submit", function (e) {
        e.preventDefault();
        upload(form);
      });
    }
  });
})();
