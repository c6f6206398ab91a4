// Keyboard shortcuts of the judging screen. They click the same controls a mouse
// would, so Gradio sees ordinary input events. The legend on screen lists them.
(() => {
  const LETTERS = "ABCDEFGHIJKLMNOP";
  const STRENGTH = { "1": "significantly_better", "2": "better", "3": "slightly_better", "4": "negligibly_better" };
  let tieNext = false;
  const $ = (sel) => document.querySelector(sel);
  const shown = (el) => !!el && el.offsetParent !== null;

  function clickRadio(id, value) {
    const box = $(`#${id}`);
    const input = box && box.querySelector(`input[value="${value}"]`);
    if (shown(box) && input) input.click();
  }
  function ranks() {
    const out = {};
    for (const L of LETTERS) {
      const checked = document.querySelector(`#rank-${L} input:checked`);
      if (checked && shown($(`#rank-${L}`))) out[L] = Number(checked.value);
    }
    return out;
  }
  function rankNext(L) {
    const current = ranks();
    if (current[L]) return;
    const values = Object.values(current);
    const top = values.length ? Math.max(...values) : 0;
    clickRadio(`rank-${L}`, String(tieNext && top > 0 ? top : top + 1));
    tieNext = false;
  }

  document.addEventListener("keydown", (e) => {
    const t = e.target;
    const typing = t && (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && !["radio", "checkbox"].includes(t.type)));
    if (typing) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); t.blur(); $("#submit")?.click(); }
      else if (e.key === "Escape") t.blur();
      return;
    }
    if (e.ctrlKey || e.metaKey || e.altKey || e.repeat) return;
    const key = e.key;
    if (e.shiftKey && /^Key[A-P]$/.test(e.code)) {
      const box = document.querySelector(`#unsafe-${e.code.slice(3)} input`);
      if (shown(box)) { e.preventDefault(); box.click(); }
      return;
    }
    if (key === "Enter") { e.preventDefault(); $("#submit")?.click(); return; }
    if (key === "/") { e.preventDefault(); $("#rationale textarea")?.focus(); return; }
    if (key === "?") { $("#guidelines button, #guidelines .label-wrap")?.click(); return; }
    if (key === "s") { $("#skip")?.click(); return; }
    if (shown($("#choice"))) {
      if (key === "a") clickRadio("choice", "A");
      else if (key === "b") clickRadio("choice", "B");
      else if (key === "t") clickRadio("choice", "tie");
      else if (STRENGTH[key]) clickRadio("strength", STRENGTH[key]);
      return;
    }
    if (key === "=") { tieNext = true; return; }
    if (key === "Backspace") { e.preventDefault(); tieNext = false; $("#clear-ranks")?.click(); return; }
    if (/^[a-p]$/.test(key)) rankNext(key.toUpperCase());
  });
})();
