// The ARIA 1.2 combobox pattern over an htmx-filled listbox (templates/terminology/_combobox.html).
// htmx fetches the options (debounced, hx-sync="this:replace"); this file adds the keyboard,
// selection, announcements, and a sequence check so a late, older response never replaces a
// newer one. No inline script or style anywhere: the CSP forbids both.
(function () {
  "use strict";
  if (window.clinikuiCombobox) return; // loaded again by a boosted navigation
  window.clinikuiCombobox = true;

  var sent = new WeakMap(); // input → number of the latest request sent

  function parts(input) {
    var root = input.closest("[data-combobox]");
    return {
      root: root,
      listbox: document.getElementById(input.getAttribute("aria-controls")),
      code: root.querySelector("[data-combobox-code]"),
      status: root.querySelector("[data-combobox-status]"),
      chosen: root.querySelector("[data-combobox-chosen]"),
    };
  }

  function options(listbox) {
    return Array.prototype.slice.call(listbox.querySelectorAll("[role=option]"));
  }

  function open(input, isOpen) {
    var listbox = parts(input).listbox;
    listbox.hidden = !isOpen;
    input.setAttribute("aria-expanded", isOpen ? "true" : "false");
    if (!isOpen) highlight(input, null);
  }

  function highlight(input, option) {
    options(parts(input).listbox).forEach(function (each) {
      each.setAttribute("aria-selected", each === option ? "true" : "false");
    });
    if (option) {
      input.setAttribute("aria-activedescendant", option.id);
      option.scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function current(input) {
    var id = input.getAttribute("aria-activedescendant");
    return id ? document.getElementById(id) : null;
  }

  function choose(input, option) {
    var p = parts(input);
    input.value = option.dataset.display;
    p.code.value = option.dataset.code;
    p.code.dataset.system = option.dataset.system;
    p.chosen.textContent = "Chosen: " + option.dataset.display + " (" + option.dataset.system + "#" + option.dataset.code + ")";
    open(input, false);
    p.root.dispatchEvent(new CustomEvent("combobox:chosen", { bubbles: true, detail: { code: option.dataset.code, system: option.dataset.system, display: option.dataset.display } }));
  }

  function move(input, step) {
    var list = options(parts(input).listbox);
    if (!list.length) return;
    if (parts(input).listbox.hidden) open(input, true);
    var index = list.indexOf(current(input));
    index = index === -1 ? (step > 0 ? 0 : list.length - 1) : (index + step + list.length) % list.length;
    highlight(input, list[index]);
  }

  function isCombobox(element) {
    return element && element.getAttribute && element.getAttribute("role") === "combobox" && element.closest("[data-combobox]");
  }

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!isCombobox(input)) return;
    if (event.key === "ArrowDown") { event.preventDefault(); move(input, 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); move(input, -1); }
    else if (event.key === "Enter") {
      var option = current(input);
      if (option && !parts(input).listbox.hidden) { event.preventDefault(); choose(input, option); }
      else if (!parts(input).listbox.hidden || input.value.trim()) { event.preventDefault(); }
    } else if (event.key === "Escape") {
      if (!parts(input).listbox.hidden) { event.preventDefault(); open(input, false); }
    }
  });

  document.addEventListener("input", function (event) {
    var input = event.target;
    if (!isCombobox(input)) return;
    parts(input).code.value = ""; // typing again un-chooses the code
    parts(input).chosen.textContent = "";
  });

  // A click on an option chooses it; mousedown is cancelled so the input keeps focus.
  document.addEventListener("mousedown", function (event) {
    var option = event.target.closest && event.target.closest("[data-combobox] [role=option]");
    if (option) event.preventDefault();
  });
  document.addEventListener("click", function (event) {
    var option = event.target.closest && event.target.closest("[data-combobox] [role=option]");
    if (!option) return;
    var input = option.closest("[data-combobox]").querySelector("[role=combobox]");
    choose(input, option);
  });

  document.addEventListener("focusout", function (event) {
    var input = event.target;
    if (isCombobox(input)) open(input, false);
  });

  // The "search all" checkbox re-runs the search through htmx's "search" trigger.
  document.addEventListener("change", function (event) {
    if (!event.target.matches("[data-combobox-scope]")) return;
    var input = event.target.closest("[data-combobox]").querySelector("[role=combobox]");
    if (window.htmx) window.htmx.trigger(input, "search");
  });

  document.addEventListener("htmx:configRequest", function (event) {
    var input = event.detail.elt;
    if (!isCombobox(input)) return;
    var number = (sent.get(input) || 0) + 1;
    sent.set(input, number);
    event.detail.parameters.seq = String(number);
  });

  document.addEventListener("htmx:beforeSwap", function (event) {
    var input = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!isCombobox(input)) return;
    var number = Number(event.detail.requestConfig.parameters.seq || 0);
    if (number !== sent.get(input)) event.detail.shouldSwap = false; // an older answer
  });

  document.addEventListener("htmx:afterSwap", function (event) {
    var input = event.detail.requestConfig && event.detail.requestConfig.elt;
    if (!isCombobox(input)) return;
    var p = parts(input);
    var count = options(p.listbox).length;
    var typed = input.value.trim();
    open(input, count > 0);
    if (count > 0) {
      p.status.textContent = count === 1 ? "1 result" : count + " results";
    } else {
      p.status.textContent = typed.length < 3 ? "" : "No results";
    }
  });
})();
