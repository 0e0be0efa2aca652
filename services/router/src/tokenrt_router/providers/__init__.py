"""Provider adapters behind one interface (`base.Provider`)."""
