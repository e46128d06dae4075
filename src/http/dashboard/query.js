// The dashboard's query box and views list: one SQL statement sent as `POST /query`, or a
// named view run with `GET /views/NAME`, and the answer (docs/QUERY.md) drawn as a table.
// Runs after app.js and uses its helpers (window.kappalogDashboard).
//
// Every value in an answer is text some author signed or a statement computed from it, so
// cells are filled with textContent only, never parsed as markup.
'use strict';

(function () {
  const { $, el, setText, showError, shortHex, fetchText, poller, TABLES_POLL_MS } =
    window.kappalogDashboard;

  // The node caps an answer at 100,000 rows; a table that long would stall the page, so
  // only the first rows are drawn (the count and the digest still cover all of them).
  const DISPLAY_MAX_ROWS = 1000;
  // A cell shows this many characters; its title holds the whole value.
  const CELL_MAX_CHARS = 120;

  // ---- the answer, with numbers exact ----

  // A JSON string, or a number: scanned left to right, a match starts either at a string's
  // opening quote (and swallows the whole string) or at a number outside any string.
  const JSON_STRING_OR_NUMBER = /"(?:[^"\\]|\\.)*"|-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/g;

  /**
   * The answer with every number kept as the text the node wrote, as `{"#": "TEXT"}`.
   * JSON.parse would round an INTEGER beyond 2^53 and write the REAL `2.0` as `2`; the
   * node's numbers are exact i64s, and REALs always carry a fraction or an exponent. No
   * value of the answer is an object with the key `#` (only `blob` and `real`).
   */
  function parseExact(text) {
    return JSON.parse(
      text.replace(JSON_STRING_OR_NUMBER, (token) => (token[0] === '"' ? token : '{"#":"' + token + '"}')),
    );
  }

  /** One table cell for one value of an answer (docs/QUERY.md, "The JSON answer"). */
  function valueCell(value) {
    if (value === null) {
      return el('td', { className: 'null' }, 'NULL');
    }
    if (typeof value === 'string') {
      return clippedCell(value, 'text');
    }
    if (typeof value === 'object') {
      if (typeof value['#'] === 'string') {
        return clippedCell(value['#'], 'num');
      }
      if (typeof value.blob === 'string') {
        return clippedCell("x'" + value.blob + "'", 'blob');
      }
      if (typeof value.real === 'string') {
        return clippedCell(value.real, 'num');
      }
    }
    // Not a value the node writes: shown as JSON rather than dropped.
    return clippedCell(JSON.stringify(value), 'text');
  }

  /**
   * A cell showing at most CELL_MAX_CHARS of `text`. The stylesheet may clip a narrower
   * column further, so every text or blob cell carries the whole value as its title.
   */
  function clippedCell(text, className) {
    const clipped = text.length > CELL_MAX_CHARS;
    const cellNode = el('td', { className }, clipped ? text.slice(0, CELL_MAX_CHARS) + '…' : text);
    if (clipped || className !== 'num') {
      cellNode.title = text;
    }
    return cellNode;
  }

  // ---- running a statement or a view ----

  // Each run gets a number; an answer that arrives after a later run began is dropped.
  let runs = 0;

  /** Fetches `path` (a query answer) and shows it under `label`, or the node's error. */
  async function run(label, path, init) {
    const mine = ++runs;
    const status = $('query-status');
    status.textContent = 'running ' + label + '…';
    status.className = 'status';
    showError('query-error', null);
    let answer;
    try {
      answer = parseExact(await fetchText(path, init));
    } catch (error) {
      if (mine === runs) {
        status.textContent = label + ' failed';
        status.className = 'status bad';
        // The node's message as it is ("no such column: nope"), not an alert.
        showError('query-error', error.detail || error.message);
      }
      return;
    }
    if (mine !== runs) {
      return;
    }
    showAnswer(answer);
    status.textContent = 'answer of ' + label;
    status.className = 'status ok';
  }

  function showAnswer(answer) {
    const columns = Array.isArray(answer.columns) ? answer.columns : [];
    const rows = Array.isArray(answer.rows) ? answer.rows : [];
    $('query-columns').replaceChildren(...columns.map((name) => el('th', {}, String(name))));
    const shown = rows.slice(0, DISPLAY_MAX_ROWS).map((row) =>
      el('tr', {}, ...(Array.isArray(row) ? row : []).map(valueCell)),
    );
    if (shown.length === 0) {
      shown.push(el('tr', {}, el('td', { colSpan: Math.max(columns.length, 1), className: 'empty' }, 'no rows')));
    }
    $('query-rows').replaceChildren(...shown);
    $('query-result').hidden = false;

    const count = rows.length === 1 ? '1 row' : rows.length + ' rows';
    setText('query-count', rows.length > DISPLAY_MAX_ROWS ? count + ' (the first ' + DISPLAY_MAX_ROWS + ' shown)' : count);
    setText('query-as-of', String(answer.as_of));
    $('query-truncated').hidden = answer.truncated !== true;
    $('query-digest').replaceChildren(shortHex(answer.digest));
    $('query-facts').hidden = false;
  }

  // ---- the query box ----

  function setupQueryBox() {
    const form = $('query-form');
    const sql = $('query-sql');
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      if (sql.value.trim() === '') {
        showError('query-error', 'type one SQL statement first');
        return;
      }
      run('the statement', 'query', {
        method: 'POST',
        headers: { 'Content-Type': 'text/plain; charset=utf-8' },
        body: sql.value,
      });
    });
    sql.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
  }

  // ---- the views list ----

  /**
   * The names of the `:name` parameters of `sql`, in order of first use, once each.
   * String literals, quoted identifiers and comments are skipped: `'12:30'` names none.
   */
  function parametersOf(sql) {
    const code = sql.replace(/'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|\[[^\]]*\]|--[^\n]*|\/\*[\s\S]*?(?:\*\/|$)/g, ' ');
    const names = [];
    for (const match of code.matchAll(/:([A-Za-z0-9_]+)/g)) {
      if (!names.includes(match[1])) {
        names.push(match[1]);
      }
    }
    return names;
  }

  // Rendered views by name: a poll updates them in place, so values typed into a view's
  // parameters survive the refresh.
  const viewItems = new Map();
  // Set once GET /views answers 404 or 503 for --no-index: a node without views. It gains none without a
  // restart, so the panel stays hidden and stops asking (a reload asks again).
  let viewsAbsent = false;

  function viewItem(view) {
    const name = String(view.name);
    const sql = String(view.sql);
    let item = viewItems.get(name);
    if (item && item.sql === sql) {
      return item;
    }
    const parameters = parametersOf(sql);
    const inputs = parameters.map((parameter) =>
      el('input', { name: parameter, placeholder: ':' + parameter, className: 'view-param' }),
    );
    const form = el(
      'form',
      { className: 'view-run', autocomplete: 'off' },
      ...parameters.map((parameter, i) => el('label', {}, ':' + parameter + ' ', inputs[i])),
      el('button', { type: 'submit' }, 'Run'),
    );
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      // `?:name=value`: bound by the node as TEXT, never spliced into the statement.
      const query = parameters.map((parameter, i) => ':' + parameter + '=' + encodeURIComponent(inputs[i].value));
      const path = 'views/' + encodeURIComponent(name) + (query.length ? '?' + query.join('&') : '');
      run('view ' + name, path);
    });
    const state = el('span', { className: 'view-state' });
    const description = el('p', { className: 'view-description' });
    const node = el(
      'li',
      { className: 'view' },
      el('div', { className: 'view-head' }, el('strong', { className: 'view-name' }, name), ' ', state),
      description,
      el('code', { className: 'view-sql', title: sql }, sql),
      form,
    );
    node.dataset.view = name;
    item = { sql, node, state, description };
    viewItems.set(name, item);
    return item;
  }

  function stateText(view) {
    switch (view.state) {
      case 'building':
        return typeof view.progress === 'number'
          ? 'building ' + Math.floor(view.progress * 100) + '%'
          : 'building';
      case 'failed':
        return 'failed: ' + String(view.reason || 'no reason given');
      default:
        return String(view.state);
    }
  }

  function stateClass(state) {
    return state === 'ready' ? 'ok' : state === 'failed' ? 'error-text' : 'warn';
  }

  function showViews(answer) {
    $('views').hidden = false;
    const views = Array.isArray(answer.views) ? answer.views : [];
    const seen = new Set();
    const nodes = views.map((view) => {
      const item = viewItem(view);
      seen.add(String(view.name));
      item.state.textContent = stateText(view);
      item.state.className = 'view-state ' + stateClass(view.state);
      item.description.textContent = view.description ? String(view.description) : '';
      item.description.hidden = !view.description;
      return item.node;
    });
    for (const name of [...viewItems.keys()]) {
      if (!seen.has(name)) {
        viewItems.delete(name);
      }
    }
    const list = $('views-list');
    if (nodes.length === 0) {
      list.replaceChildren(el('li', { className: 'empty' }, 'no views (add one with PUT /views/NAME)'));
    } else if (nodes.some((node, i) => list.children[i] !== node) || list.children.length !== nodes.length) {
      // Only when the list changed: moving a node takes the focus from its inputs.
      list.replaceChildren(...nodes);
    }
  }

  const views = poller(
    () => (viewsAbsent ? null : 'views'),
    TABLES_POLL_MS,
    showViews,
    (error) => {
      // 404: a node from before views; 503 naming --no-index: a node run without the index.
      if (error && (error.status === 404
        || (error.status === 503 && String(error.detail).includes('--no-index')))) {
        viewsAbsent = true;
        $('views').hidden = true;
        return;
      }
      if (error) {
        $('views').hidden = false; // a node with views that failed to list them says why
      }
      showError('views-error', error);
    },
  );

  // ---- start ----

  setupQueryBox();
  views.start();
})();
