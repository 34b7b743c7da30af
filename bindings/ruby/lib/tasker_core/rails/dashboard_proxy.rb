# frozen_string_literal: true

require "net/http"
require "openssl"
require "uri"

module TaskerCore
  module Rails
    # A Rack app that forwards the dashboard of `tasker serve` (its /ui
    # pages) through a Rails (or any Rack) application, so that operators
    # reach it on the app's own host:
    #
    #   # config/routes.rb
    #   mount TaskerCore::Rails::DashboardProxy.new(upstream: "http://127.0.0.1:8080") => "/ui"
    #
    # It must be mounted at /ui: the dashboard's pages, redirects, session
    # cookie (Path=/ui) and scripts use absolute /ui/... paths, so the path
    # is forwarded unchanged (a request outside /ui is answered 404 with
    # that reason). Nothing else is rewritten: the dashboard's own
    # authentication stays in force (its login with the API token when the
    # server has one, its session cookie, its CSRF token on every POST), and
    # the proxy preserves what that needs:
    #
    # - the dashboard's session cookie (tasker_ui_session) both ways; the
    #   app's other cookies are not sent upstream;
    # - the browser's Origin and Sec-Fetch-Site headers, and
    #   X-Forwarded-Host set to the host the browser asked for (the one it
    #   arrived with in X-Forwarded-Host, else Host): the dashboard accepts
    #   a POST whose Origin is that host. X-Forwarded-Proto and
    #   X-Forwarded-For are set too;
    # - redirects (Location /ui/...), status, content type and the
    #   dashboard's security headers (CSP, X-Frame-Options, no-store).
    #
    # An Authorization header is forwarded only when it is a bearer token
    # (scripts reading the dashboard with the API token); the app's own
    # Basic credentials are not. Gate the route with the app's
    # authentication as for any admin tool (`authenticate :user, ... do
    # mount ... end`); the dashboard's login still applies behind it.
    # Responses are buffered (the dashboard polls; it streams nothing).
    class DashboardProxy
      PREFIX = "/ui"
      # Cookies of the dashboard (internal/ui: SessionCookie).
      COOKIES = %w[tasker_ui_session].freeze
      HOP_BY_HOP = %w[connection keep-alive proxy-authenticate proxy-authorization proxy-connection te trailer
                      trailers transfer-encoding upgrade].freeze
      # Request headers the proxy sets itself or drops.
      OWN_REQUEST_HEADERS = (HOP_BY_HOP + %w[host cookie authorization x-forwarded-host x-forwarded-proto
                                             x-forwarded-for content-length version]).freeze

      attr_reader :upstream

      # upstream: the base URL of `tasker serve` ("http://127.0.0.1:8080");
      # timeouts in seconds.
      def initialize(upstream:, open_timeout: 5, read_timeout: 30)
        @upstream = begin
          URI.parse(upstream.to_s)
        rescue URI::InvalidURIError
          nil
        end
        unless @upstream.is_a?(URI::HTTP) && @upstream.host
          raise ArgumentError, "upstream must be an http(s) URL such as \"http://127.0.0.1:8080\" (got #{upstream.inspect})"
        end

        @open_timeout = open_timeout
        @read_timeout = read_timeout
      end

      def call(env)
        path = "#{env['SCRIPT_NAME']}#{env['PATH_INFO']}"
        path = "/" if path.empty?
        unless path == PREFIX || path.start_with?("#{PREFIX}/")
          return text(404, "TaskerCore::Rails::DashboardProxy serves the dashboard's #{PREFIX} paths only: mount it at " \
                           "\"#{PREFIX}\" (the dashboard's pages link to #{PREFIX}/...); got #{path}")
        end

        query = env["QUERY_STRING"].to_s
        response = forward(env, query.empty? ? path : "#{path}?#{query}")
        respond(env, response)
      rescue SystemCallError, IOError, SocketError, Timeout::Error, OpenSSL::SSL::SSLError => e
        text(502, "the tasker dashboard at #{@upstream} did not answer: #{e.class}: #{e.message}")
      end

      private

      def forward(env, target)
        method = env["REQUEST_METHOD"].to_s.upcase
        input = env["rack.input"]
        body = input&.read
        input.rewind if input.respond_to?(:rewind)
        has_body = !body.nil? && (!body.empty? || %w[POST PUT PATCH].include?(method))
        base = @upstream.path.to_s.chomp("/")
        req = Net::HTTPGenericRequest.new(method, has_body, method != "HEAD", "#{base}#{target}")
        request_headers(env).each { |name, value| req[name] = value }
        if has_body
          req.body = body
          req["Content-Type"] = env["CONTENT_TYPE"] if env["CONTENT_TYPE"]
        end
        http = Net::HTTP.new(@upstream.host, @upstream.port)
        http.use_ssl = @upstream.scheme == "https"
        http.open_timeout = @open_timeout
        http.read_timeout = @read_timeout
        http.start { |h| h.request(req) }
      end

      def request_headers(env)
        out = {}
        env.each do |key, value|
          next unless key.start_with?("HTTP_") && value.is_a?(String)

          name = key[5..].downcase.tr("_", "-")
          next if OWN_REQUEST_HEADERS.include?(name)

          out[name] = value
        end
        cookies = dashboard_cookies(env["HTTP_COOKIE"])
        out["cookie"] = cookies unless cookies.empty?
        auth = env["HTTP_AUTHORIZATION"].to_s
        out["authorization"] = auth if auth.strip.downcase.start_with?("bearer ")
        # The dashboard decodes no compressed bodies of its own; what it
        # sends is passed on as is.
        out["accept-encoding"] ||= "identity"
        host = first(env["HTTP_X_FORWARDED_HOST"]) || env["HTTP_HOST"] || env["SERVER_NAME"]
        out["x-forwarded-host"] = host if host
        out["x-forwarded-proto"] = first(env["HTTP_X_FORWARDED_PROTO"]) || env["rack.url_scheme"] || "http"
        remote = env["REMOTE_ADDR"]
        forwarded_for = [env["HTTP_X_FORWARDED_FOR"], remote].compact.reject(&:empty?).join(", ")
        out["x-forwarded-for"] = forwarded_for unless forwarded_for.empty?
        out
      end

      def dashboard_cookies(header)
        header.to_s.split(/;\s*/).select { |c| COOKIES.include?(c.split("=", 2).first.to_s.strip) }.join("; ")
      end

      def first(list)
        v = list.to_s.split(",").first.to_s.strip
        v.empty? ? nil : v
      end

      def respond(env, res)
        headers = {}
        cookies = []
        res.each_header do |name, value|
          next if HOP_BY_HOP.include?(name) || name == "content-length"

          if name == "set-cookie"
            cookies.concat(res.get_fields("set-cookie"))
            next
          end
          value = local_location(value) if name == "location"
          headers[header_name(name)] = value
        end
        cookies.uniq!
        unless cookies.empty?
          headers[header_name("set-cookie")] = rack3? ? cookies : cookies.join("\n")
        end
        body = env["REQUEST_METHOD"].to_s.upcase == "HEAD" ? "" : res.body.to_s
        status = res.code.to_i
        headers[header_name("content-length")] = body.bytesize.to_s unless [204, 304].include?(status) || status < 200
        [status, headers, [body]]
      end

      # A Location naming the upstream itself becomes a path on this host.
      def local_location(value)
        origin = "#{@upstream.scheme}://#{@upstream.host}:#{@upstream.port}"
        short = "#{@upstream.scheme}://#{@upstream.host}"
        [origin, short].each do |o|
          return value[o.length..] if value.start_with?("#{o}/")
        end
        value
      end

      # Rack 3 wants lower-case header names; Rack 2 apps and middleware
      # expect the usual capitalization.
      def header_name(name)
        rack3? ? name : name.split("-").map(&:capitalize).join("-")
      end

      def rack3?
        return @rack3 unless @rack3.nil?

        @rack3 = defined?(::Rack.release) ? Gem::Version.new(::Rack.release) >= Gem::Version.new("3") : false
      end

      def text(status, message)
        body = "#{message}\n"
        [status, { header_name("content-type") => "text/plain; charset=utf-8",
                   header_name("content-length") => body.bytesize.to_s }, [body]]
      end
    end
  end
end
