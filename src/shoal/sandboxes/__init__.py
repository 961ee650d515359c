"""Project sandboxes (DESIGN.md §6): the table, the manager, the files API and the port relay."""
