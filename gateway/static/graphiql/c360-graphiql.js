// c360's GraphiQL page: GraphiQL with the explorer plugin, every file served
// by the gateway itself. No inline script and no eval, so the page runs under
// the gateway's Content-Security-Policy (script-src 'self').
(function () {
  "use strict";

  var root = document.getElementById("graphiql");
  var missing = ["React", "ReactDOM", "GraphiQL", "GraphiQLPluginExplorer"].filter(
    function (name) {
      return typeof window[name] === "undefined";
    },
  );
  if (missing.length) {
    // Say so on the page: a silent "Loading..." is what this page replaced.
    root.textContent =
      "GraphiQL could not start: " + missing.join(", ") +
      " did not load (see the browser console).";
    return;
  }

  // Short lines: they fit the query editor in a laptop-sized window.
  var WELCOME = [
    "# c360 GraphiQL",
    "#",
    "# Every request needs a bearer token: c360 demo",
    "# prints one per role. Paste one into the Headers",
    "# tab below as",
    '#   {"Authorization": "Bearer <token>"}',
    "# then run a query with Ctrl-Enter, e.g.",
    '#   { customer(email: "...") { name email } }',
    "#",
    "# The docs and Ctrl-Space completion load once",
    "# a valid token is there.",
    "",
  ].join("\n");

  // The query and variables travel in the URL so a page can be shared; the
  // headers never do (a bearer token in a URL ends up in history and logs).
  var params = new URLSearchParams(window.location.search);
  var shared = { q: params.get("q"), variables: params.get("variables") };

  function share(update) {
    Object.assign(shared, update);
    var search = new URLSearchParams();
    Object.keys(shared).forEach(function (key) {
      if (shared[key]) {
        search.set(key, shared[key]);
      }
    });
    var text = search.toString();
    history.replaceState(null, "", text ? "?" + text : window.location.pathname);
  }

  // GraphiQL fetches the schema once, with the headers it has then: before a
  // token is pasted, that is a 401. A new fetcher makes it fetch again, so the
  // docs and completion follow the token pasted into the Headers tab.
  var introspectedWith = null; // the headers of the latest schema fetch

  function canonical(headers) {
    return JSON.stringify(headers || {});
  }

  function newFetcher() {
    var send = GraphiQL.createFetcher({
      url: window.location.origin + window.location.pathname,
    });
    return function (params, options) {
      if (params.operationName === "IntrospectionQuery") {
        introspectedWith = canonical(options && options.headers);
      }
      return send(params, options);
    };
  }
  var explorer = GraphiQLPluginExplorer.explorerPlugin();

  function Page() {
    var current = React.useState(newFetcher);
    var setFetcher = current[1];
    var pending = React.useRef(0);

    function onEditHeaders(text) {
      clearTimeout(pending.current);
      pending.current = setTimeout(function () {
        var headers;
        try {
          headers = canonical(JSON.parse(text || "{}"));
        } catch (notYetJson) {
          return; // still being typed
        }
        if (introspectedWith !== null && headers !== introspectedWith) {
          setFetcher(function () {
            return newFetcher();
          });
        }
      }, 300);
    }

    return React.createElement(GraphiQL, {
      fetcher: current[0],
      onEditHeaders: onEditHeaders,
      plugins: [explorer],
      defaultQuery: WELCOME,
      query: shared.q || undefined,
      variables: shared.variables || undefined,
      onEditQuery: function (query) {
        share({ q: query });
      },
      onEditVariables: function (variables) {
        share({ variables: variables });
      },
      defaultEditorToolsVisibility: true,
      isHeadersEditorEnabled: true,
      // Kept in this browser's localStorage, so a reload keeps the token.
      shouldPersistHeaders: true,
      inputValueDeprecation: true,
    });
  }

  ReactDOM.createRoot(root).render(React.createElement(Page));
})();
