// The composer's small behaviours: the conclusion's live character counter, and the list of
// chosen conclusion codes (each pick of the SNOMED CT combobox adds one; Remove takes it out).
// Saving is htmx's job (templates/reports/report_edit.html); nothing here talks to the server.
(function () {
  "use strict";
  if (window.clinikuiComposer) return; // loaded again by a boosted navigation
  window.clinikuiComposer = true;

  function updateCounter(textarea) {
    var counter = document.querySelector('[data-counter-for="' + textarea.id + '"]');
    if (!counter) return;
    var max = Number(counter.dataset.counterMax);
    var length = textarea.value.length;
    counter.textContent = length + " of " + max + " characters";
    counter.classList.toggle("text-danger", length > max);
  }

  document.addEventListener("input", function (event) {
    if (event.target.id === "id_conclusion") updateCounter(event.target);
  });

  function chosenList(root) {
    return root.querySelector("[data-multi-codes-list]");
  }

  document.addEventListener("combobox:chosen", function (event) {
    var root = event.target.closest("[data-multi-codes]");
    if (!root) return;
    var detail = event.detail;
    var list = chosenList(root);
    if (list.querySelector('[data-code="' + CSS.escape(detail.code) + '"]')) return;
    var item = document.createElement("li");
    item.className = "mb-1";
    item.dataset.code = detail.code;
    var hidden = document.createElement("input");
    hidden.type = "hidden";
    hidden.name = root.dataset.multiCodesName;
    hidden.value = detail.code;
    var text = document.createElement("span");
    text.textContent = detail.display + " ";
    var code = document.createElement("span");
    code.className = "text-secondary small";
    code.textContent = detail.system + "#" + detail.code;
    var remove = document.createElement("button");
    remove.type = "button";
    remove.className = "btn btn-link btn-sm";
    remove.dataset.removeCode = "";
    remove.textContent = "Remove";
    var hiddenLabel = document.createElement("span");
    hiddenLabel.className = "visually-hidden";
    hiddenLabel.textContent = " " + detail.display;
    remove.appendChild(hiddenLabel);
    item.append(hidden, text, code, remove);
    list.appendChild(item);
    // The combobox picks one code at a time; the list above is what the report keeps.
    var input = root.querySelector("[role=combobox]");
    input.value = "";
    var chosen = root.querySelector("[data-combobox-chosen]");
    if (chosen) chosen.textContent = "Added " + detail.display + ".";
    var codeField = root.querySelector("[data-combobox-code]");
    if (codeField) codeField.value = "";
  });

  // After a conflicting edit, autosave stops: each further autosave would only add another
  // conflict copy. Save still works and leads to the comparison.
  var inConflict = false;
  document.addEventListener("draft-conflict", function () { inConflict = true; });
  document.addEventListener("htmx:beforeRequest", function (event) {
    if (inConflict && event.detail.elt.id === "report-form") event.preventDefault();
  });

  // After signing in again in place (static/js/session.js), save what was typed meanwhile.
  document.addEventListener("session-restored", function () {
    var form = document.getElementById("report-form");
    if (form) form.dispatchEvent(new Event("change", { bubbles: true }));
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-remove-code]");
    if (!button) return;
    var form = button.closest("form");
    var item = button.closest("li");
    var list = item.parentElement;
    item.remove();
    var next = list.querySelector("[data-remove-code]");
    var input = list.closest("[data-multi-codes]").querySelector("[role=combobox]");
    (next || input).focus();
    // A removal changes the form without an input event: let autosave know.
    if (form) form.dispatchEvent(new Event("change", { bubbles: true }));
  });
})();
