package groups

// coreState is the core's registry of joined groups; the core replaces
// this placeholder.
type coreState struct{}

func (c *coreState) closeAll() error { return nil }
