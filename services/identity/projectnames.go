package identity

// ProjectByName returns the id of an account's project by its name: the
// AMQP front end takes a project's name as a vhost.
func (c *Cache) ProjectByName(account, name string) (string, bool) {
	p, ok := c.projectByName(account, name)
	return p.GetId(), ok
}
