package analyzer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/sluice-mesh/sluice/model"
)

// webhooks POSTs events as JSON from one goroutine per hook, so a slow receiver never
// blocks the loop; when a hook's queue is full the event is dropped and logged.
type webhooks struct {
	log    *zap.Logger
	queues []chan *Event
}

const webhookQueue = 256

func newWebhooks(ctx context.Context, hooks []model.Webhook, log *zap.Logger) *webhooks {
	w := &webhooks{log: log}
	for _, h := range hooks {
		q := make(chan *Event, webhookQueue)
		w.queues = append(w.queues, q)
		go w.run(ctx, h, q)
	}
	return w
}

func (w *webhooks) send(e *Event) {
	for _, q := range w.queues {
		select {
		case q <- e:
		default:
			w.log.Warn("webhook queue full; event dropped", zap.String("event", e.Type), zap.String("rollout", e.Rollout))
		}
	}
}

func (w *webhooks) run(ctx context.Context, h model.Webhook, q chan *Event) {
	client := &http.Client{}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	retries := max(h.Retries, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-q:
			body, _ := json.Marshal(e)
			var err error
			for attempt := 0; attempt <= retries; attempt++ {
				if attempt > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(time.Duration(attempt) * 500 * time.Millisecond):
					}
				}
				if err = post(ctx, client, h, timeout, body); err == nil {
					break
				}
			}
			if err != nil {
				w.log.Warn("webhook failed", zap.String("url", h.URL), zap.String("event", e.Type), zap.Error(err))
			}
		}
	}
}

func post(ctx context.Context, client *http.Client, h model.Webhook, timeout time.Duration, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range h.Headers {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}
