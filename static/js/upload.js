// The tablo page's upload form: drag and drop, several files, a progress bar.
// Each file is its own POST to the form's action, so one refused or failed
// file never costs the others, and the server's per-request size check stays
// one file's. The server answers as it does for the plain form (messages, then
// a redirect to this page); the messages and the files list of that page
// replace this page's, without a reload.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form || !window.FormData || !window.XMLHttpRequest) {
    return; // the plain form still works
  }
  const zone = document.getElementById("drop-zone");
  const input = form.querySelector("input[type=file]");
  const button = form.querySelector("button[type=submit]");
  const progress = document.getElementById("upload-progress");
  const bar = document.getElementById("upload-bar");
  const status = document.getElementById("upload-status");
  const maxBytes = Number(form.dataset.maxBytes);
  const maxSize = form.dataset.maxSize;
  let busy = false;

  form.querySelectorAll("[data-js-only]").forEach((el) => { el.hidden = false; });

  function hasFiles(event) {
    return event.dataTransfer && Array.from(event.dataTransfer.types).includes("Files");
  }

  function messageItem(text, level) {
    const li = document.createElement("li");
    li.className = "message " + level;
    li.textContent = text;
    return li;
  }

  function showMessages(items) {
    const box = document.getElementById("messages");
    box.replaceChildren();
    if (!items.length) {
      return;
    }
    const list = document.createElement("ul");
    list.className = "messages";
    list.setAttribute("role", "status");
    list.append(...items);
    box.append(list);
  }

  // Resolves with {status, doc, url}; status 0 when the connection failed.
  function send(file, onProgress) {
    return new Promise((resolve) => {
      const data = new FormData();
      data.append("csrfmiddlewaretoken", form.elements.csrfmiddlewaretoken.value);
      data.append(input.name, file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.responseType = "document";
      xhr.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && event.total) {
          onProgress(event.loaded / event.total);
        }
      });
      xhr.addEventListener("load", () => {
        resolve({ status: xhr.status, doc: xhr.response, url: xhr.responseURL });
      });
      ["error", "abort", "timeout"].forEach((type) => {
        xhr.addEventListener(type, () => resolve({ status: 0, doc: null, url: "" }));
      });
      xhr.send(data);
    });
  }

  function setBusy(on) {
    busy = on;
    input.disabled = on;
    button.disabled = on;
    form.setAttribute("aria-busy", on ? "true" : "false");
  }

  async function upload(files) {
    if (busy || !files.length) {
      return;
    }
    setBusy(true);
    const items = [];
    const accepted = [];
    for (const file of files) {
      if (file.size > maxBytes) {
        // Not sent at all: the server would throw the bytes away anyway.
        items.push(messageItem(
          `“${file.name}” was not uploaded: files may be at most ${maxSize}. Nothing was stored.`,
          "error",
        ));
      } else {
        accepted.push(file);
      }
    }
    const total = accepted.reduce((sum, file) => sum + file.size, 0) || 1;
    let sent = 0;
    let uploaded = 0;
    let lastPage = null;
    progress.hidden = false;
    bar.max = total;
    bar.value = 0;
    bar.dataset.state = "uploading";

    for (const [index, file] of accepted.entries()) {
      status.textContent = `Uploading ${index + 1} of ${accepted.length}: ${file.name}…`;
      const answer = await send(file, (fraction) => { bar.value = sent + fraction * file.size; });
      sent += file.size;
      bar.value = sent;
      if (answer.status === 200 && answer.doc) {
        if (new URL(answer.url).pathname !== window.location.pathname) {
          // Signed out meanwhile, or sent elsewhere: follow it.
          window.location.assign(answer.url);
          return;
        }
        const replies = Array.from(answer.doc.querySelectorAll("#messages li.message"));
        if (replies.some((li) => li.classList.contains("success"))) {
          uploaded += 1;
        }
        items.push(...replies.map((li) => document.importNode(li, true)));
        lastPage = answer;
      } else {
        const why = answer.status
          ? `the server answered ${answer.status}`
          : "the connection was lost";
        items.push(messageItem(
          `“${file.name}” was not uploaded: ${why}. Please try again.`,
          "error",
        ));
      }
    }

    bar.value = total;
    bar.dataset.state = "done";
    status.textContent = `Done: ${uploaded} of ${files.length} ${files.length === 1 ? "file" : "files"} uploaded.`;
    showMessages(items);
    if (lastPage) {
      const fresh = lastPage.doc.getElementById("files");
      const current = document.getElementById("files");
      if (fresh && current) {
        current.replaceWith(document.importNode(fresh, true));
      }
      if (lastPage.url !== window.location.href) {
        window.history.replaceState(null, "", lastPage.url);
      }
    }
    form.reset();
    setBusy(false);
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    upload(Array.from(input.files));
  });

  zone.addEventListener("dragenter", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
      zone.classList.add("is-dragover");
    }
  });
  zone.addEventListener("dragover", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
      event.dataTransfer.dropEffect = busy ? "none" : "copy";
      zone.classList.add("is-dragover");
    }
  });
  zone.addEventListener("dragleave", (event) => {
    if (!zone.contains(event.relatedTarget)) {
      zone.classList.remove("is-dragover");
    }
  });
  zone.addEventListener("drop", (event) => {
    if (hasFiles(event)) {
      event.preventDefault();
      zone.classList.remove("is-dragover");
      upload(Array.from(event.dataTransfer.files));
    }
  });
  // A file dropped next to the zone would otherwise replace the page with it.
  ["dragover", "drop"].forEach((type) => {
    window.addEventListener(type, (event) => {
      if (hasFiles(event) && !zone.contains(event.target)) {
        event.preventDefault();
        if (type === "dragover") {
          event.dataTransfer.dropEffect = "none";
        }
      }
    });
  });
}());
