# frozen_string_literal: true

require "generators/tasker_core/install_generator"

module Tasker
  module Generators
    # `rails generate tasker:install`: the old name of tasker_core:install.
    class InstallGenerator < TaskerCore::Generators::InstallGenerator
      source_root File.expand_path("../tasker_core/templates", __dir__)
      namespace "tasker:install"
    end
  end
end
