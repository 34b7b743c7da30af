# frozen_string_literal: true

# redis-rb 4.8 warns about calls Sidekiq 6.4 makes; not ours to fix.
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

redis = { url: ENV.fetch("REDIS_URL", "redis://127.0.0.1:6379/0") }
Sidekiq.configure_server do |config|
  config.redis = redis
  # Scheduled jobs (set(wait:)) are moved to the queue by a poller; the test
  # wants it to look every second rather than every 5-15 s.
  config.options[:poll_interval_average] = Float(ENV["SIDEKIQ_POLL_INTERVAL"]) if ENV["SIDEKIQ_POLL_INTERVAL"]
end
Sidekiq.configure_client { |config| config.redis = redis }

