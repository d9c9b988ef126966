// tokenwarden console: confirmation dialogs, select-all, charts. Loaded as a file (the CSP
// admits no inline script); every page works without it — confirmations fall back to pages.
"use strict";
(function () {
  function openDialog(id) {
    const d = document.getElementById(id);
    if (!d || typeof d.showModal !== "function") return false;
    d.showModal();
    const no = d.querySelector("[data-dialog-close]");
    if (no) no.focus();
    return true;
  }
  document.addEventListener("click", function (e) {
    const opener = e.target.closest("[data-dialog]");
    if (opener && openDialog(opener.dataset.dialog)) { e.preventDefault(); return; }
    const no = e.target.closest("[data-dialog-close]");
    if (no) { e.preventDefault(); no.closest("dialog").close(); }
  });
  // A bulk form asks first: its dialog names the action and the number selected.
  document.addEventListener("submit", function (e) {
    const form = e.target;
    if (!form.matches("form[data-bulk]") || form.dataset.confirmed === "1") return;
    e.preventDefault();
    const boxes = form.querySelectorAll("input[data-select]:checked");
    const action = form.querySelector("[name=action]");
    const d = document.getElementById(form.dataset.bulk);
    if (!d || typeof d.showModal !== "function") { form.dataset.confirmed = "1"; form.submit(); return; }
    d.querySelector("[data-count]").textContent = String(boxes.length);
    const label = action ? action.options[action.selectedIndex].text : "";
    d.querySelector("[data-action]").textContent = label;
    const warning = action ? document.getElementById("warn-" + action.value) : null;
    d.querySelector("[data-warning]").textContent = warning ? warning.textContent : "";
    const yes = d.querySelector("[data-yes]");
    yes.disabled = boxes.length === 0;
    yes.onclick = function () {
      form.dataset.confirmed = "1";
      const flag = form.querySelector("input[name=confirmed]");
      if (flag) flag.value = "yes";
      d.close();
      form.submit();
    };
    d.showModal();
    d.querySelector("[data-dialog-close]").focus();
  });
  document.addEventListener("change", function (e) {
    const all = e.target.closest("input[data-select-all]");
    if (!all) return;
    const form = all.form;
    form.querySelectorAll("input[data-select]").forEach(function (b) { b.checked = all.checked; });
  });
  function charts() {
    if (typeof window.Chart !== "function") return;
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      const source = document.getElementById(canvas.dataset.chart);
      if (!source) return;
      const spec = JSON.parse(source.textContent);
      new window.Chart(canvas, {
        type: spec.type,
        data: { labels: spec.labels, datasets: [{ label: spec.label, data: spec.values }] },
        options: { animation: false, responsive: true, plugins: { legend: { display: false } },
                   scales: spec.type === "doughnut" ? {} : { y: { beginAtZero: true, ticks: { precision: 0 } } } },
      });
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", charts);
  else charts();
})();
