// The kappalog dashboard: reads the node's JSON endpoints and its /tail event stream and
// draws them. Served with a Content-Security-Policy that allows this file and nothing
// inline; see src/http/dashboard.rs.
//
// Everything shown comes from the node, and entry `data` is text any author may sign, so
// the DOM is built with createElement and textContent only (never innerHTML), and links
// are built only from values checked to be hex.
'use strict';

(function () {
  const SUMMARY_POLL_MS = 1000;
  const TABLES_POLL_MS = 5000;
  const TAIL_MAX_ENTRIES = 50;
  const TAIL_RETRY_MS = 15000;
  const CHART_SECONDS = 300;
  const FEEDS_PAGE_SIZE = 100;
  const HEX_64 = /^[0-9a-f]{64}$/;

  // The bearer token lives only here, for as long as the page is open (see the note on the
  // page): never in localStorage, sessionStorage or a cookie.
  let token = '';
  let ownAuthor = null;

  // ---- DOM helpers: text only ----

  function $(id) {
    return document.getElementById(id);
  }

  /** An element with text children; `props` sets only the given properties. */
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      node[key] = value;
    }
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  function showError(id, error) {
    const node = $(id);
    if (error) {
      node.textContent = String(error.message || error);
      node.hidden = false;
    } else {
      node.hidden = true;
      node.textContent = '';
    }
  }

  /** A hex value shortened for a table cell, the whole of it in the tooltip. */
  function shortHex(hex) {
    if (typeof hex !== 'string') {
      return el('span', {}, '–');
    }
    return el('code', { title: hex, className: 'hex' }, hex.length > 16 ? hex.slice(0, 16) + '…' : hex);
  }

  function time(ms) {
    if (typeof ms !== 'number') {
      return '–';
    }
    return new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC');
  }

  function replaceRows(tbody, rows, columns, emptyText) {
    if (rows.length === 0) {
      tbody.replaceChildren(el('tr', {}, el('td', { colSpan: columns, className: 'empty' }, emptyText)));
    } else {
      tbody.replaceChildren(...rows);
    }
  }

  function cell(content) {
    return el('td', {}, content);
  }

  // ---- numbers: JSON.parse rounds integers beyond 2^53, the node's are exact ----

  /**
   * The exact digits of top-level integer field `key` in the JSON text `raw` (`sum` is
   * 128-bit, values are 64-bit). An unescaped `"key":` can only be an object key, never
   * part of a string (a quote inside a string is escaped), and these objects are flat.
   */
  function exactInteger(raw, key, parsed) {
    const match = new RegExp('"' + key + '":(-?[0-9]+)').exec(raw);
    return match ? match[1] : String(parsed);
  }

  // ---- fetching ----

  async function fetchText(path, init) {
    const response = await fetch(path, Object.assign({ cache: 'no-store' }, init || {}));
    const text = await response.text();
    if (!response.ok) {
      let message = text;
      try {
        message = JSON.parse(text).error || text;
      } catch (_) {
        // not JSON: show the text as it is
      }
      const error = new Error(path + ': ' + response.status + ' ' + message);
      error.status = response.status;
      // The server's own words, for a panel that shows them as they are (the query box).
      error.detail = String(message);
      throw error;
    }
    return text;
  }

  /**
   * Fetches `path` (or what the function `path` returns; null skips a round) every
   * `intervalMs` and calls `render(parsed, text)` when the answer changed, so links and
   * selections stay put between polls. `sample(parsed)`, if given, sees every answer.
   * `errorId` names the element that shows a failed round, or is a function given each
   * round's error (null after a success) for a panel that handles its own. `parse` turns
   * the answer's text into what `render` gets: JSON.parse unless given (`/metrics` is text).
   */
  function poller(path, intervalMs, render, errorId, sample, parse = JSON.parse) {
    const report = typeof errorId === 'function' ? errorId : (error) => showError(errorId, error);
    let last = null;
    let timer = null;
    let busy = false;
    let again = false;
    async function once() {
      const url = typeof path === 'function' ? path() : path;
      if (url === null) {
        return;
      }
      try {
        const text = await fetchText(url);
        const parsed = parse(text);
        if (sample) {
          sample(parsed);
        }
        if (text !== last) {
          last = text;
          render(parsed, text);
        }
        report(null);
        setConnection(true);
      } catch (error) {
        report(error);
        if (error.status === undefined) {
          setConnection(false);
        }
      }
    }
    // One request in flight per poller: a refresh during one runs right after it.
    async function tick() {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      clearTimeout(timer);
      do {
        again = false;
        await once();
      } while (again);
      busy = false;
      timer = setTimeout(tick, intervalMs);
    }
    return {
      start: tick,
      refresh() {
        last = null;
        tick();
      },
    };
  }

  function setConnection(ok) {
    setText('connection', ok ? 'connected to the node' : 'the node does not answer; retrying');
    $('connection').classList.toggle('bad', !ok);
  }

  // ---- this node ----

  const health = poller(
    'health',
    SUMMARY_POLL_MS,
    (answer) => {
      const author = HEX_64.test(answer.author) ? answer.author : null;
      setText('node-author', String(answer.author));
      setText('node-entries', String(answer.entries));
      if (author !== ownAuthor) {
        ownAuthor = author;
        document.title = 'kappalog ' + String(answer.author).slice(0, 8);
        ownFeed.refresh();
        feeds.refresh();
      }
    },
    'node-error',
  );

  /**
   * `/feeds?after=X&limit=1` answers the first feed after X: with X the hex number one below
   * our author, that is our own feed if we have one. (`/entries?author=` would answer 404
   * while the feed is empty, which the browser reports as an error.)
   */
  function justBelow(hex) {
    const digits = hex.split('');
    for (let i = digits.length - 1; i >= 0; i--) {
      if (digits[i] !== '0') {
        digits[i] = (parseInt(digits[i], 16) - 1).toString(16);
        return digits.join('');
      }
      digits[i] = 'f';
    }
    return null; // the all-zero author: nothing is below it
  }

  const ownFeed = poller(
    () => {
      if (!ownAuthor) {
        return null; // not known yet: the health poller refreshes this once it is
      }
      const below = justBelow(ownAuthor);
      return below ? 'feeds?limit=1&after=' + below : 'feeds?limit=1';
    },
    TABLES_POLL_MS,
    (answer) => {
      const feed = (answer.feeds || []).find((f) => f.author === ownAuthor);
      showOwnFeed(feed ? feed.length : 0, feed ? feed.head : null);
    },
    'node-error',
  );

  function showOwnFeed(length, head) {
    setText('own-feed-length', length === null ? '–' : String(length));
    setText('own-feed-head', head || '–');
  }

  // ---- summary and the rate chart ----

  // (time ms, count) samples of the summary, oldest first, for the chart.
  const samples = [];

  const summary = poller(
    'summary',
    SUMMARY_POLL_MS,
    (s, raw) => {
      setText('summary-count', String(s.count));
      setText('summary-sum', exactInteger(raw, 'sum', s.sum));
      setText('summary-min', s.min === null ? '–' : exactInteger(raw, 'min', s.min));
      setText('summary-max', s.max === null ? '–' : exactInteger(raw, 'max', s.max));
      setText('summary-mean', s.mean === null ? '–' : String(s.mean));
      setText('summary-feeds', String(s.feed_count));
      setText('summary-forked', String(s.forked_feed_count));
      setText('summary-digest', s.digest);
      setText('own-feed-state', String(s.own_feed).replace('_', ' '));
      $('own-feed-state').className = s.own_feed === 'ok' ? 'ok' : 'warn';
    },
    'summary-error',
    // Every answer is a sample, changed or not: a quiet second is a zero bar.
    (s) => {
      const now = Date.now();
      samples.push({ t: now, count: s.count });
      while (samples.length > 0 && samples[0].t < now - (CHART_SECONDS + 5) * 1000) {
        samples.shift();
      }
      drawChart();
    },
  );

  /** Entries per second for each of the last CHART_SECONDS seconds (oldest first). */
  function ratesPerSecond(now) {
    const rates = new Array(CHART_SECONDS).fill(0);
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1];
      const b = samples[i];
      const age = Math.floor((now - b.t) / 1000);
      const seconds = (b.t - a.t) / 1000;
      if (age < 0 || age >= CHART_SECONDS || seconds <= 0) {
        continue;
      }
      // A count can drop (a feed found forked leaves the summary): not negative traffic.
      rates[CHART_SECONDS - 1 - age] += Math.max(0, b.count - a.count) / seconds;
    }
    return rates;
  }

  const SVG = 'http://www.w3.org/2000/svg';

  function svg(tag, attrs, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) {
      node.setAttribute(key, String(value));
    }
    if (text !== undefined) {
      node.textContent = text;
    }
    return node;
  }

  function drawChart() {
    const width = 600;
    const height = 140;
    const left = 40;
    const bottom = 18;
    const plotWidth = width - left;
    const plotHeight = height - bottom - 8;
    const rates = ratesPerSecond(Date.now());
    const peak = Math.max(1, ...rates);
    // A round top for the scale: 1, 2 or 5 times a power of ten.
    const power = Math.pow(10, Math.floor(Math.log10(peak)));
    const top = [1, 2, 5, 10].map((m) => m * power).find((v) => v >= peak);
    const chart = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': 'entries committed per second, last five minutes',
      preserveAspectRatio: 'none',
    });
    const barWidth = plotWidth / CHART_SECONDS;
    rates.forEach((rate, i) => {
      if (rate > 0) {
        const h = (rate / top) * plotHeight;
        chart.append(svg('rect', {
          class: 'bar',
          x: left + i * barWidth,
          y: 8 + plotHeight - h,
          width: Math.max(barWidth, 1),
          height: h,
        }));
      }
    });
    chart.append(
      svg('line', { class: 'axis', x1: left, y1: 8 + plotHeight, x2: width, y2: 8 + plotHeight }),
      svg('line', { class: 'axis', x1: left, y1: 8, x2: left, y2: 8 + plotHeight }),
      svg('text', { class: 'label', x: left - 4, y: 14, 'text-anchor': 'end' }, String(top)),
      svg('text', { class: 'label', x: left - 4, y: 8 + plotHeight, 'text-anchor': 'end' }, '0'),
      svg('text', { class: 'label', x: left, y: height - 4 }, '−5 min'),
      svg('text', { class: 'label', x: width, y: height - 4, 'text-anchor': 'end' }, 'now'),
    );
    const latest = rates[rates.length - 1];
    chart.append(svg('title', {}, `${latest.toFixed(1)} entries/s in the last second, peak ${peak.toFixed(1)}`));
    $('rate-chart').replaceChildren(chart);
  }

  // ---- the live tail ----

  let tail = null;
  let lastCursor = null;

  function openTail() {
    const from = lastCursor === null ? 'now' : encodeURIComponent(lastCursor);
    tail = new EventSource('tail?from=' + from);
    const status = $('tail-status');
    tail.onopen = () => {
      status.textContent = 'connected: newest first, the last ' + TAIL_MAX_ENTRIES + ' kept';
      status.classList.remove('bad');
    };
    tail.addEventListener('entry', (event) => {
      lastCursor = event.lastEventId || lastCursor;
      let entry;
      try {
        entry = JSON.parse(event.data);
      } catch (_) {
        return;
      }
      showTailEntry(entry, event.data);
      if (entry.author === ownAuthor) {
        showOwnFeed(entry.seq, entry.hash);
      }
    });
    tail.addEventListener('end', (event) => {
      // The node ended the stream on purpose (shutdown, or we fell behind); the browser
      // reconnects by itself with Last-Event-ID, so nothing is missed.
      let reason = '';
      try {
        reason = JSON.parse(event.data).reason;
      } catch (_) {
        // keep it empty
      }
      status.textContent = 'the node ended the stream (' + String(reason) + '); reconnecting…';
    });
    tail.onerror = () => {
      if (tail.readyState === EventSource.CLOSED) {
        // Not an event stream (an older node without /tail, or a refused cursor): the
        // browser will not retry this one, so try a fresh one later.
        status.textContent = 'live tail unavailable; retrying every ' + TAIL_RETRY_MS / 1000 + ' s';
        status.classList.add('bad');
        tail = null;
        setTimeout(openTail, TAIL_RETRY_MS);
      } else {
        status.textContent = 'live tail reconnecting…';
        status.classList.add('bad');
      }
    };
  }

  function showTailEntry(entry, raw) {
    const item = el(
      'li',
      {},
      el('span', { className: 'when' }, time(entry.timestamp)),
      ' ',
      shortHex(entry.author),
      el('span', { className: 'seq' }, ' #' + entry.seq),
      ' value ',
      el('strong', {}, exactInteger(raw, 'value', entry.value)),
      entry.data ? el('span', { className: 'data' }, entry.data) : '',
      el('code', { className: 'hash', title: 'entry hash' }, String(entry.hash)),
    );
    if (entry.author === ownAuthor) {
      item.classList.add('own');
    }
    const list = $('tail-list');
    list.prepend(item);
    while (list.children.length > TAIL_MAX_ENTRIES) {
      list.lastElementChild.remove();
    }
  }

  // ---- appending ----

  function setupForm() {
    const form = $('add-form');
    const result = $('add-result');
    $('add-token').addEventListener('input', (event) => {
      token = event.target.value;
    });
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const value = $('add-value').value.trim();
      if (!/^-?[0-9]{1,19}$/.test(value)) {
        result.textContent = 'value must be an integer';
        result.className = 'status bad';
        return;
      }
      // The value goes in as its digits, so a 64-bit value is not rounded on the way.
      const body = '{"value":' + value + ',"data":' + JSON.stringify($('add-data').value) + '}';
      const headers = { 'Content-Type': 'application/json' };
      if (token) {
        headers.Authorization = 'Bearer ' + token;
      }
      result.textContent = 'appending…';
      result.className = 'status';
      try {
        const entry = JSON.parse(await fetchText('add', { method: 'POST', headers, body }));
        result.textContent = 'appended seq ' + entry.seq + ', hash ' + entry.hash;
        result.className = 'status ok';
        summary.refresh();
      } catch (error) {
        result.textContent = error.status === 401
          ? 'this node requires a bearer token (it runs with --token): type it above'
          : String(error.message);
        result.className = 'status bad';
      }
    });
  }

  // ---- feeds, paginated by /feeds `next` ----

  // `after` of each page shown so far: the first page has none.
  const feedPages = [null];
  let feedsNext = null;

  const feeds = poller(
    () => {
      const after = feedPages[feedPages.length - 1];
      return 'feeds?limit=' + FEEDS_PAGE_SIZE + (after ? '&after=' + after : '');
    },
    TABLES_POLL_MS,
    (answer) => {
      const list = Array.isArray(answer.feeds) ? answer.feeds : [];
      feedsNext = typeof answer.next === 'string' && HEX_64.test(answer.next) ? answer.next : null;
      const rows = list.map((feed) => {
        const row = el(
          'tr',
          {},
          cell(shortHex(feed.author)),
          // A forked feed has no agreed length or head: null.
          el('td', { className: 'num' }, feed.length === null ? '–' : String(feed.length)),
          cell(shortHex(feed.head)),
          cell(time(feed.first_timestamp)),
          cell(time(feed.last_timestamp)),
          el('td', { className: feed.status === 'ok' ? 'ok' : 'warn' }, String(feed.status)),
          // Cosigners consistent with the served author checkpoint (0 without one).
          el('td', { className: 'num', title: 'checkpoint size ' + String(feed.checkpoint_size ?? 0) },
            String(feed.k ?? 0)),
        );
        if (feed.author === ownAuthor) {
          row.classList.add('own');
        }
        return row;
      });
      replaceRows($('feeds-body'), rows, 7, 'no feeds yet');
      setText('feeds-page', 'page ' + feedPages.length + (feedsNext ? '' : ' (last)'));
      $('feeds-next').disabled = feedsNext === null;
      $('feeds-prev').disabled = feedPages.length === 1;
      $('feeds-first').disabled = feedPages.length === 1;
    },
    'feeds-error',
  );

  function setupPager() {
    $('feeds-next').addEventListener('click', () => {
      if (feedsNext) {
        feedPages.push(feedsNext);
        feeds.refresh();
      }
    });
    $('feeds-prev').addEventListener('click', () => {
      if (feedPages.length > 1) {
        feedPages.pop();
        feeds.refresh();
      }
    });
    $('feeds-first').addEventListener('click', () => {
      feedPages.length = 1;
      feeds.refresh();
    });
  }

  // ---- peers ----

  const peers = poller(
    'peers',
    TABLES_POLL_MS,
    (answer) => {
      const rows = (answer.peers || []).map((p) =>
        el(
          'tr',
          {},
          cell(String(p.addr)),
          cell(String(p.direction)),
          cell(p.author ? shortHex(p.author) : '–'),
          el('td', { className: p.connected ? 'ok' : 'warn' }, p.connected ? 'connected' : 'disconnected'),
          cell(p.last_sync === null ? 'never' : time(p.last_sync)),
          el('td', { className: 'num' }, p.lag === null ? '–' : String(p.lag)),
          el('td', { className: 'num' }, String(p.entries_sent)),
          el('td', { className: 'num' }, String(p.entries_received)),
          el('td', { className: 'num' }, String(p.resyncs)),
          el('td', { className: p.last_error ? 'error-text' : '' }, p.last_error || '–'),
          cell(p.feeds_skipped ? p.feeds_skipped + ' (' + (p.skip_reason || '') + ')' : '0'),
        ),
      );
      replaceRows($('peers-body'), rows, 11, 'no sync peers (run with --listen or --peer)');
      const counts = (title, byReason) => {
        const parts = Object.entries(byReason || {}).map(([reason, n]) => reason + ': ' + n);
        return parts.length ? title + ' ' + parts.join(', ') : '';
      };
      setText(
        'peers-refused',
        [counts('refused since start —', answer.refused), counts('new feeds skipped —', answer.feeds_skipped)]
          .filter(Boolean)
          .join('; '),
      );
    },
    'peers-error',
  );

  // ---- fork proofs ----

  let proofUrls = [];

  const forks = poller(
    'forks',
    TABLES_POLL_MS,
    (proofs) => {
      proofUrls.forEach((url) => URL.revokeObjectURL(url));
      proofUrls = [];
      const rows = (Array.isArray(proofs) ? proofs : []).map((proof) => {
        // The proof as the node gave it, re-serialised: a JSON file, never markup.
        const blob = new Blob([JSON.stringify(proof, null, 2) + '\n'], { type: 'application/json' });
        const url = URL.createObjectURL(blob);
        proofUrls.push(url);
        const author = HEX_64.test(proof.author) ? proof.author : 'unknown';
        const seq = Number.isSafeInteger(proof.seq) ? proof.seq : 0;
        return el(
          'tr',
          {},
          cell(shortHex(proof.author)),
          el('td', { className: 'num' }, String(proof.seq)),
          cell(shortHex(proof.a && proof.a.hash)),
          cell(shortHex(proof.b && proof.b.hash)),
          cell(el('a', { href: url, download: 'fork-' + author.slice(0, 16) + '-' + seq + '.json' }, 'download')),
        );
      });
      replaceRows($('forks-body'), rows, 5, 'no forks recorded');
    },
    'forks-error',
  );

  // ---- shared with the page's other scripts (query.js, which runs after this one) ----

  window.kappalogDashboard = Object.freeze({ $, el, setText, showError, shortHex, fetchText, poller, TABLES_POLL_MS });

  // ---- start ----

  // The script is deferred: the document is parsed when it runs.
  setupForm();
  setupPager();
  drawChart();
  openTail();
  health.start();
  summary.start();
  feeds.start();
  peers.start();
  forks.start();
})();
