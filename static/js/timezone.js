// Tells the server the browser's time zone (an IANA name such as "Europe/Paris"), so that dates
// are entered and shown in the clinician's own time. A cookie, not storage: it holds no patient
// data, and the server checks the name against the zones it knows before using it.
//
// Temporal gives the zone's name cheaply (0.3–2 ms at 4× CPU throttling). Intl, the fallback
// for browsers without Temporal, loads ICU's formatting data on its first use: a long task of
// 50–90 ms at 4× on every page. So the name is read when the browser is idle after load, never in
// the way of the first paint or input.
function browserTimeZone() {
  "use strict";
  if (typeof Temporal === "object" && Temporal.Now && Temporal.Now.timeZoneId) {
    return Temporal.Now.timeZoneId();
  }
  return Intl.DateTimeFormat().resolvedOptions().timeZone;
}
function sendTimeZone() {
  "use strict";
  const zone = browserTimeZone();
  if (!zone) return;
  const sent = document.cookie.split("; ").find((item) => item.startsWith("clinikui_tz="));
  if (sent && decodeURIComponent(sent.slice("clinikui_tz=".length)) === zone) return;
  const secure = window.location.protocol === "https:" ? "; Secure" : "";
  document.cookie =
    "clinikui_tz=" + encodeURIComponent(zone) + "; path=/; max-age=31536000; SameSite=Lax" + secure;
}
window.addEventListener("load", function () {
  "use strict";
  if ("requestIdleCallback" in window) window.requestIdleCallback(sendTimeZone, { timeout: 2000 });
  else window.setTimeout(sendTimeZone, 0);
});
