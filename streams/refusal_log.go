package streams

import (
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// refusalLogWindow is how long a refusal, logged at Warn, stays quiet for
// the same peer, stream and cause: a consumer retries a refusing producer
// with backoff and every catalog change re-judges it, and one line per
// cause tells the operator as much as one per retry.
const refusalLogWindow = 10 * time.Minute

// warnable reports whether a refusal with code is worth an operator's
// attention: it follows from configuration (policy, tickets, capacity,
// network, codec), not from the normal churn of a network (a producer that
// closed, a consumer not yet in the catalog) or from a broken peer.
func warnable(code Code) bool {
	switch code {
	case CodeNotAllowed, CodeNoCapacity, CodeDifferentNetwork, CodeCodecMismatch:
		return true
	}
	return false
}

// producerHint says what to do about a refused consumer.
func producerHint(code Code) string {
	switch code {
	case CodeNotAllowed:
		return "the consumer does not meet this producer's policy (require predicates, tickets); give it the required tags or a valid ticket, or relax the policy"
	case CodeNoCapacity:
		return "the producer serves its maximum of consumers; raise the limit (--max-consumers) or add producers"
	case CodeDifferentNetwork:
		return "the consumer asked for another network; check that both use the same network name"
	case CodeCodecMismatch:
		return "producer and consumer use different codecs for the stream"
	}
	return ""
}

// consumerHint says what to do about a refusing producer.
func consumerHint(code Code) string {
	switch code {
	case CodeNotAllowed:
		return "this node does not meet the producer's policy; check its tags (--tags) and tickets (--ticket: valid now, issued by a trusted issuer for this peer, network and class); retried when either entry changes, and at least every RefusalRetryMax (5 min by default)"
	case CodeNoCapacity:
		return "the producer serves its maximum of consumers; retrying with backoff"
	case CodeDifferentNetwork:
		return "the producer is in another network; check that both use the same network name"
	case CodeCodecMismatch:
		return "producer and consumer use different codecs for the stream"
	}
	return ""
}

// warnOnce reports whether the line of key was not logged within
// refusalLogWindow.
func (s *Service) warnOnce(key string) bool { return s.warned.Allow(key, time.Now()) }

// reject refuses a subscription (see Service.reject) and tells the
// operator once per consumer and cause.
func (p *Producer[T]) reject(st network.Stream, code Code, reason string) {
	p.svc.reject(st, code, reason)
	p.warnRefused(st.Conn().RemotePeer(), code, reason)
}

// warnRefused logs at Warn, once per consumer and cause, that the producer
// refused or ended a consumer's subscription for a reason the operator can
// act on.
func (p *Producer[T]) warnRefused(consumer peer.ID, code Code, reason string) {
	if !warnable(code) || !p.svc.warnOnce(fmt.Sprintf("producer|%s|%s|%d|%s", p.id, consumer, code, reason)) {
		return
	}
	p.log.Warn("consumer refused", "name", p.name, "consumer", consumer, "code", code.String(), "reason", reason, "hint", producerHint(code))
}

// warnRefused logs at Warn, once per producer and cause, that producer
// refused this consumer (err carries the close code and the producer's
// reason).
func (c *Consumer[T]) warnRefused(producer peer.ID, err error) {
	code, ok := codeOf(err)
	if !ok || !warnable(code) {
		return
	}
	reason := err.Error()
	var ce *CodeError
	if errors.As(err, &ce) && ce.Reason != "" {
		reason = ce.Reason
	}
	if !c.svc.warnOnce(fmt.Sprintf("consumer|%s|%s|%d|%s", c.id, producer, code, reason)) {
		return
	}
	c.log.Warn("refused by producer", "name", c.name, "producer", producer, "code", code.String(), "reason", reason, "hint", consumerHint(code))
}

// warnIneligible logs at Info, once per producer and cause, that this
// consumer does not subscribe to producer because of its own policy: that
// is the policy working as configured (a consumer of the "eu" producers
// passes over the others), so it is news, not a warning.
func (c *Consumer[T]) warnIneligible(producer peer.ID, err error) {
	if !c.svc.warnOnce(fmt.Sprintf("ineligible|%s|%s|%s", c.id, producer, err)) {
		return
	}
	c.log.Info("producer refused by this consumer's policy", "name", c.name, "producer", producer, "reason", err.Error(),
		"hint", "the producer does not meet this consumer's require predicates or tickets; check its tags and tickets, or relax this consumer's policy")
}
