// The dashboard's query box and views list: one SQL statement sent as `POST /query`, or a
// named view run with `GET /views/NAME`, and the answer (docs/QUERY.md) drawn as a table;
// and the index panel: the SQL index's state and lag, and the query engine's load.
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

  /** A view's or the index's `{state, progress, reason}` as a few words. */
  function stateText(view) {
    switch (view.state) {
      case 'building':
        return typeof view.progress === 'number' && Number.isFinite(view.progress)
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

  // ---- the index and the query engine's load ----

  // Often enough to watch a lag shrink, rarely enough that the panel's two requests stay
  // a small share of the page's.
  const INDEX_POLL_MS = 2000;

  // One label of a sample line, `name="value"` (the value's `\\`, `\"` and `\n` escaped),
  // then an optional comma; sticky, so labels are read one after another.
  const METRIC_LABEL = /\s*([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/y;

  /**
   * The samples of metric `name` in the Prometheus/OpenMetrics text of `/metrics`, each
   * `{labels, value}`. Only what a sample line can hold is read: `name`, an optional
   * `{labels}`, a space, the value; a timestamp or exemplar after it is ignored, and a line
   * that is not that (a comment, `# EOF`, another metric named with `name` as a prefix, a
   * label that does not parse) is skipped rather than misread.
   */
  function metricSamples(text, name) {
    const samples = [];
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) {
        continue;
      }
      let at = name.length;
      const labels = {};
      if (line[at] === '{') {
        at += 1;
        METRIC_LABEL.lastIndex = at;
        let label;
        while (line[at] !== '}' && (label = METRIC_LABEL.exec(line)) !== null) {
          labels[label[1]] = label[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
          at = METRIC_LABEL.lastIndex;
        }
        if (line[at] !== '}') {
          continue;
        }
        at += 1;
      }
      if (line[at] !== ' ') {
        continue;
      }
      const token = line.slice(at + 1).trim().split(/\s+/)[0];
      const value = Number(token);
      if (token !== '' && !Number.isNaN(value)) {
        samples.push({ labels, value });
      }
    }
    return samples;
  }

  /**
   * The query engine's figures in `/metrics` text: statements running and waiting now
   * (null when the node does not report them), and `/query` answers by status since the
   * node started, summed over its methods (a status never answered has no series: 0).
   */
  function queryLoad(text) {
    const gauge = (name) => {
      const samples = metricSamples(text, name);
      return samples.length === 1 ? samples[0].value : null;
    };
    const queries = metricSamples(text, 'kappalog_http_requests_total').filter(
      (sample) => sample.labels.route === '/query',
    );
    const answered = (status) => queries
      .filter((sample) => sample.labels.status === status)
      .reduce((sum, sample) => sum + sample.value, 0);
    return {
      running: gauge('kappalog_query_running'),
      waiting: gauge('kappalog_query_waiting'),
      timeouts: answered('504'),
      refused: answered('400'),
      busy: answered('503'),
    };
  }

  function showIndex(health) {
    const index = health.index && typeof health.index === 'object' ? health.index : { state: 'unknown' };
    const building = index.state === 'building' && typeof index.end === 'number' && index.end > 0;
    const shown = $('index-state');
    shown.textContent = stateText({
      state: index.state,
      reason: index.reason,
      progress: building ? Math.min(index.covered / index.end, 1) : undefined,
    });
    shown.className = stateClass(index.state);
    setText('index-lag', typeof index.lag_bytes === 'number' ? String(index.lag_bytes) : '–');
  }

  function showQueryLoad(load) {
    const text = (n) => (n === null ? '–' : String(n));
    setText('query-running', text(load.running));
    setText('query-waiting', text(load.waiting));
    setText('query-timeouts', text(load.timeouts));
    setText('query-refused', text(load.refused));
    setText('query-busy', text(load.busy));
  }

  // The panel's two sources fail apart: a success of one must not hide the other's error.
  const indexErrors = { health: null, metrics: null };
  function reportIndexError(source) {
    return (error) => {
      indexErrors[source] = error;
      showError('index-error', indexErrors.health || indexErrors.metrics);
    };
  }

  const indexHealth = poller('health', INDEX_POLL_MS, showIndex, reportIndexError('health'));
  const indexLoad = poller(
    'metrics',
    INDEX_POLL_MS,
    showQueryLoad,
    reportIndexError('metrics'),
    undefined,
    queryLoad,
  );

  // ---- start ----

  setupQueryBox();
  views.start();
  indexHealth.start();
  indexLoad.start();
})();
