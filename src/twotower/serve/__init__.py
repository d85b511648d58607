"""Search your own documents: `Searcher`, reading a collection, building and reading an index
folder, and the HTTP server with its page (web/). The last layer: nothing imports it but the
cli."""
