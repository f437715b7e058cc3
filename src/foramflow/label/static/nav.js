"use strict";
// The pages' shared bar: says when this project is open in another browser as well.
// Every page sends a heartbeat; the server answers with the other sessions seen lately.

(function presence() {
  const banner = document.getElementById("presence");
  const hhmm = (iso) => new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", hour12: false });
  async function beat() {
    try {
      const response = await fetch("/api/presence", { method: "POST" });
      if (!response.ok) return;
      const { others } = await response.json();
      banner.hidden = !others.length;
      banner.textContent = others.length
        ? `This project is open in another window since ${hhmm(others[0].since)}; changes there and here may cross.`
        : "";
    } catch (err) { /* the server is away: say nothing */ }
  }
  beat();
  setInterval(beat, 20000);
})();
