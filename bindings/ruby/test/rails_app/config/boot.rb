# frozen_string_literal: true

# No Bundler: the gems come from Debian packages (ruby-rails, ruby-sidekiq,
# ruby-pg, ruby-ffi). The tasker_core gem is used from this source tree.
$LOAD_PATH.unshift File.expand_path("../../../lib", __dir__)
