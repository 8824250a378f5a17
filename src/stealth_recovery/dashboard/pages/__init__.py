"""The dashboard's pages, one module per area of the sidebar."""
