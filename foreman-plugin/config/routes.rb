# frozen_string_literal: true

ForemanPvc::Engine.routes.draw do
  resources :rollouts, only: %i[index new create show] do
    collection { get :auto_complete_search }
    member do
      post :start
      post :pause
      post :resume
      post :promote
      post :abort
      post :refresh
    end
  end
end

# Foreman versions its API with ApiConstraints; the tests' dummy app has
# none and routes the same paths without it.
api_constraints = defined?(::ApiConstraints) ? ::ApiConstraints.new(version: 2, default: true) : {}

Rails.application.routes.draw do
  mount ForemanPvc::Engine, at: '/foreman_pvc'

  namespace :api, defaults: { format: 'json' } do
    scope '(:apiv)', module: :v2, defaults: { apiv: 'v2' }, apiv: /v1|v2/, constraints: api_constraints do
      resources :pvc_rollouts, only: %i[index show create] do
        member do
          post :start
          post :pause
          post :resume
          post :promote
          post :abort
          post :refresh
        end
      end
    end
  end
end
