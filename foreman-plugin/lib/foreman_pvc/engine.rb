# frozen_string_literal: true

module ForemanPvc
  class Engine < ::Rails::Engine
    isolate_namespace ForemanPvc
    engine_name 'foreman_pvc'

    # Foreman's db:migrate runs plugins' migrations from the app's paths.
    initializer 'foreman_pvc.load_app_instance_data' do |app|
      ForemanPvc::Engine.paths['db/migrate'].existent.each do |path|
        app.config.paths['db/migrate'] << path
      end
    end

    # The registration block needs Foreman; outside it (the tests' dummy
    # app) the engine loads without it.
    initializer 'foreman_pvc.register_plugin', before: :finisher_hook do |app|
      app.reloader.to_prepare do
        require_relative 'register' if defined?(::Foreman::Plugin)
      end
    end

    # The "Start rollout" entry of the hosts list's bulk actions.
    config.to_prepare do
      ::HostsHelper.include(ForemanPvc::HostsHelperExtensions) if defined?(::HostsHelper)
    rescue StandardError => e
      Rails.logger.warn "ForemanPvc: skipping engine hook: #{e}"
    end

    # Start the periodic tick once Foreman's job executor (Dynflow) is up.
    # Executor worlds only, as Foreman's own periodic jobs: every web
    # worker's client world would schedule one more copy.
    initializer 'foreman_pvc.tick', after: :finisher_hook do
      next unless defined?(::Foreman::Application) && ::Foreman::Application.respond_to?(:dynflow)

      ::Foreman::Application.dynflow.config.on_init do |world|
        ForemanPvc::RolloutTickJob.spawn_if_missing(world)
      end
    end

    rake_tasks do
      load File.expand_path('../tasks/foreman_pvc_tasks.rake', __dir__)
    end
  end
end
