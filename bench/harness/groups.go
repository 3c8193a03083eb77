package harness

// mosaikReplicators are mosaik's systems in the groups rows.
func mosaikReplicators() []replicator { return nil }
