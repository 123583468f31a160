# frozen_string_literal: true

Rails.application.routes.draw do
  # The plugin's config/routes.rb mounts the engine and adds its API routes.
end
