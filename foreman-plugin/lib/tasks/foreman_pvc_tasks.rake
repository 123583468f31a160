# frozen_string_literal: true

require 'rake/testtask'

# Inside a Foreman checkout (bundler.d entry): `rake test:foreman_pvc` runs
# the plugin's tests with Foreman loaded. They need nothing from Foreman
# beyond a PostgreSQL DATABASE_URL; test.sh is the way to run them alone.
namespace :test do
  desc 'Test foreman_pvc'
  Rake::TestTask.new(:foreman_pvc) do |t|
    root = File.expand_path('../..', __dir__)
    t.libs << File.join(root, 'test') << File.join(root, 'lib')
    t.test_files = FileList["#{root}/test/unit/**/*_test.rb"]
    t.warning = false
  end
end

namespace :foreman_pvc do
  desc 'Advance running rollouts once (what the periodic job does every minute)'
  task tick: :environment do
    ForemanPvc::RolloutTickJob.advance_all
  end
end

Rake::Task[:test].enhance ['test:foreman_pvc'] if Rake::Task.task_defined?(:test)
