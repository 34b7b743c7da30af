# frozen_string_literal: true

# Puma in cluster mode with the app preloaded in the master, as in
# production. The embedded transport loads libtasker lazily, so the master
# (which only boots the app) never loads it, and each worker loads its own
# on its first core call. The guard stops the master if something did load
# it before the fork (a core call in an initializer, say): Puma 5 logs and
# ignores an exception raised here, so before_fork! exits instead.
workers Integer(ENV.fetch("WEB_CONCURRENCY", "2"))
threads 1, Integer(ENV.fetch("RAILS_MAX_THREADS", "4"))
preload_app!

before_fork { TaskerCore::Rails.before_fork! }
