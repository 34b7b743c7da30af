# frozen_string_literal: true

# Runs the gem's whole core suite in one process (one transport, one database).
Dir[File.join(__dir__, "*_test.rb")].sort.each { |f| require f }
