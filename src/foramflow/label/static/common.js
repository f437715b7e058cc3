// What every page of the app shares: calls to its API, and the toast that reports them.
"use strict";

async function api(path, body, contentType) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "Content-Type": contentType || "application/json" },
    body: contentType ? body : JSON.stringify(body),
  };
  const response = await fetch(path, options);
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = data.detail;
    throw new Error(typeof detail === "string" ? detail : detail ? JSON.stringify(detail) : response.statusText);
  }
  return data;
}

function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.classList.add("show");
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => box.classList.remove("show"), 4000);
}
