// The ARIA 1.2 combobox pattern over an htmx-filled listbox (templates/terminology/_combobox.html).
// htmx fetches the options (debounced, hx-sync="this:replace"); this file adds the keyboard,
// selection, announcements, and a sequence check so a late, older response never replaces a
// newer one. No inline script or style anywhere: the CSP forbids both.
//
// The same combobox also enhances a short <select data-searchable-select> (the composer's
// Performer and Results interpreter): its options are filtered here, each typed word matching
// the start of a word of the option's text, accents and case ignored. The select stays in the form,
// hidden, and holds the value, so without JavaScript the page shows the plain select.
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
    if (isLocal(input)) {
      p.chosen.textContent = "Chosen: " + option.dataset.display;
    } else {
      p.code.dataset.system = option.dataset.system;
      p.chosen.textContent = "Chosen: " + option.dataset.display + " (" + option.dataset.system + "#" + option.dataset.code + ")";
    }
    open(input, false);
    p.root.dispatchEvent(new CustomEvent("combobox:chosen", { bubbles: true, detail: { code: option.dataset.code, system: option.dataset.system, display: option.dataset.display } }));
  }

  function move(input, step) {
    if (isLocal(input) && parts(input).listbox.hidden) filter(input);
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

  // --- a <select data-searchable-select> as a combobox over its own options ---------------------

  function isLocal(input) {
    return input.closest("[data-combobox]").hasAttribute("data-combobox-local");
  }

  function folded(text) {
    return text.normalize("NFD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

  function words(text) {
    return folded(text).split(/[^\p{L}\p{N}]+/u).filter(Boolean);
  }

  // Lists the select's options in which every typed word starts a word ("lop" finds López,
  // "marta l" Marta López); all of them when nothing is typed.
  function filter(input) {
    var p = parts(input);
    var typed = words(input.value);
    p.listbox.replaceChildren();
    Array.prototype.forEach.call(p.code.options, function (choice) {
      if (!choice.value) return; // the empty choice: clearing the text chooses nobody
      var own = words(choice.textContent);
      var matches = typed.every(function (word) {
        return own.some(function (each) { return each.indexOf(word) === 0; });
      });
      if (!matches) return;
      var item = document.createElement("li");
      item.id = input.getAttribute("aria-controls") + "-option-" + p.listbox.children.length;
      item.className = "combobox-option";
      item.setAttribute("role", "option");
      item.setAttribute("aria-selected", "false");
      item.dataset.code = choice.value;
      item.dataset.display = choice.textContent;
      item.textContent = choice.textContent;
      p.listbox.appendChild(item);
    });
    var count = options(p.listbox).length;
    open(input, count > 0);
    p.status.textContent = count === 0 ? "No match" : count === 1 ? "1 result" : count + " results";
  }

  function enhance(select) {
    if (select.dataset.enhanced || select.disabled) return; // disabled: ClinikAPI is unreachable
    select.dataset.enhanced = "true";
    var root = select.parentElement;
    var label = root.querySelector('label[for="' + select.id + '"]');
    var name = label ? label.textContent.trim() : select.name;
    var base = select.id + "-search";
    var input = document.createElement("input");
    input.type = "text";
    input.id = base;
    input.className = select.classList.contains("is-invalid") ? "form-control is-invalid" : "form-control";
    input.setAttribute("role", "combobox");
    input.setAttribute("aria-autocomplete", "list");
    input.setAttribute("aria-expanded", "false");
    input.setAttribute("aria-controls", base + "-listbox");
    var described = [base + "-hint", select.getAttribute("aria-describedby")].filter(Boolean);
    input.setAttribute("aria-describedby", described.join(" "));
    if (select.getAttribute("aria-invalid")) input.setAttribute("aria-invalid", "true");
    input.autocomplete = "off";
    input.spellcheck = false;
    input.value = select.value ? select.selectedOptions[0].textContent : "";
    var hint = document.createElement("div");
    hint.className = "form-text";
    hint.id = base + "-hint";
    hint.textContent = "Type the first letters of any of the names, or press ↓ to list everyone.";
    var listbox = document.createElement("ul");
    listbox.className = "combobox-listbox list-unstyled";
    listbox.id = base + "-listbox";
    listbox.setAttribute("role", "listbox");
    listbox.setAttribute("aria-label", name + " suggestions");
    listbox.hidden = true;
    var chosen = document.createElement("p");
    chosen.className = "combobox-chosen small mb-0";
    chosen.dataset.comboboxChosen = "";
    chosen.setAttribute("aria-live", "polite");
    var status = document.createElement("div");
    status.className = "visually-hidden";
    status.setAttribute("role", "status");
    status.setAttribute("aria-live", "polite");
    status.dataset.comboboxStatus = "";
    root.classList.add("combobox");
    root.dataset.combobox = "";
    root.dataset.comboboxLocal = "";
    select.dataset.comboboxCode = "";
    select.hidden = true;
    if (label) label.htmlFor = input.id;
    select.after(input, hint, listbox, chosen, status);
  }

  function enhanceWithin(element) {
    if (!element.querySelectorAll) return;
    if (element.matches("select[data-searchable-select]")) enhance(element);
    element.querySelectorAll("select[data-searchable-select]").forEach(enhance);
  }

  document.addEventListener("DOMContentLoaded", function () { enhanceWithin(document.body); });
  document.addEventListener("htmx:load", function (event) { enhanceWithin(event.target); });

  document.addEventListener("keydown", function (event) {
    var input = event.target;
    if (!isCombobox(input)) return;
    if (event.key === "ArrowDown") { event.preventDefault(); move(input, 1); }
    else if (event.key === "ArrowUp") { event.preventDefault(); move(input, -1); }
    else if (event.key === "Enter") {
      var option = current(input);
      var shown = options(parts(input).listbox);
      if (!option && isLocal(input) && shown.length === 1) option = shown[0];
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
    if (isLocal(input)) filter(input);
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
    if (!isCombobox(input)) return;
    open(input, false);
    // Leaving a searchable select without choosing: show that nobody is chosen, not stray text.
    if (isLocal(input) && !parts(input).code.value) input.value = "";
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
